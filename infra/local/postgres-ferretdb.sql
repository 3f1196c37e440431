-- Tuning of the local test cluster that FerretDB 1.24's PostgreSQL backend stores into
-- (postgres.sh applies it, idempotently, to the ferretdb database). Test services only:
-- deployments use real MongoDB (docker-compose.yml), where none of this applies.
--
-- Why: FerretDB pushes an equality filter down as `_jsonb->$1 @> $2` (the field name a
-- parameter too). Its own indexes are btrees on `(_jsonb->'field')`, which `@>` cannot use, and
-- with the field a parameter no expression index matches a generic plan either. So every lookup,
-- even by _id, was a sequential scan that parses every row's jsonb: measured at 3,000 documents,
-- 3.4 ms of PostgreSQL CPU per findOne by _id, growing with the collection.
--
-- 1. Plans are always custom (parameters folded in), so `_jsonb->'_id' @> '"x"'` can match an
--    expression index.
-- 2. Beside every btree FerretDB creates on `(_jsonb->'field', ...)` (each collection's unique _id
--    index and each createIndexes key), a GIN index on `(_jsonb->'field') jsonb_path_ops`,
--    which serves `@>`. Measured: findOne by _id 0.2 ms of PostgreSQL CPU at 3,000 documents.

ALTER DATABASE ferretdb SET plan_cache_mode = force_custom_plan;

CREATE OR REPLACE FUNCTION pir_gin_beside(idx regclass) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
  tbl regclass;
  am text;
  expr text;
  field text;
  gin_name text;
BEGIN
  SELECT i.indrelid::regclass, a.amname INTO tbl, am
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
   WHERE i.indexrelid = idx;
  IF am IS DISTINCT FROM 'btree' THEN RETURN; END IF;
  expr := pg_get_indexdef(idx, 1, true);
  field := substring(expr FROM $re$^\(?_jsonb -> '((?:[^']|'')+)'::text\)?$$re$);
  IF field IS NULL THEN RETURN; END IF;
  gin_name := left(split_part(idx::text, '.', 2), 50) || '_gin';
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin ((_jsonb -> %L) jsonb_path_ops)',
                 gin_name, tbl, replace(field, '''''', ''''));
END $fn$;

CREATE OR REPLACE FUNCTION pir_gin_on_create_index() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE
  cmd record;
BEGIN
  FOR cmd IN SELECT objid FROM pg_event_trigger_ddl_commands() WHERE object_type = 'index' LOOP
    PERFORM pir_gin_beside(cmd.objid::regclass);
  END LOOP;
END $$;

DROP EVENT TRIGGER IF EXISTS pir_gin_on_create_index;
CREATE EVENT TRIGGER pir_gin_on_create_index ON ddl_command_end
  WHEN TAG IN ('CREATE INDEX', 'CREATE TABLE')
  EXECUTE FUNCTION pir_gin_on_create_index();

-- Collections created before this file was applied.
DO $$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT i.indexrelid FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
            JOIN pg_attribute att ON att.attrelid = c.oid AND att.attname = '_jsonb' LOOP
    PERFORM pir_gin_beside(r.indexrelid::regclass);
  END LOOP;
END $$;
