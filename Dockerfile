# PIR image for docker-compose.yml (not built in this repository's CI: its machines have no Docker engine).
# Two stages: the build (compilers for native modules, TypeScript) and a slim runtime as user node.
FROM node:20-bookworm-slim AS build
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json .npmrc tsconfig.json ./
COPY patches ./patches
COPY bin ./bin
COPY api ./api
COPY cli ./cli
COPY core ./core
COPY formats ./formats
COPY infra ./infra
COPY ingest ./ingest
COPY schemas ./schemas
COPY workers ./workers
COPY test ./test
COPY bench ./bench
COPY console ./console
RUN npm ci && npm prune --omit=dev

FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends xz-utils zstd bzip2 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
COPY --from=build /app/api/ops-assets ./api/ops-assets
COPY package.json ./
ENV PIR_HOST=0.0.0.0 PIR_DATA_DIR=/data
VOLUME /data
EXPOSE 9292
USER node
# /healthz on the API port; roles without an API (worker) answer it on PIR_METRICS_PORT.
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["node", "-e", "const p=process.env.PIR_METRICS_PORT||process.env.PIR_PORT||9292;fetch('http://127.0.0.1:'+p+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "bin/pir.js"]
CMD ["serve"]
