// PIR ops dashboard: signs in with an admin token (kept in sessionStorage), reads server-sent
// events from /ops/api/stream with fetch (so the token travels in a header, never the URL),
// and draws the snapshots with uPlot.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const config = JSON.parse($('pir-config').textContent);
  const STATUSES = ['queued', 'saving', 'uploading', 'importing', 'active', 'killed', 'deactivated', 'pending_delete', 'deleted'];
  const STAGES = ['unpack', 'inspect', 'checksum', 'promote'];
  const COLORS = ['#3b6fd8', '#137333', '#b00020', '#e0a000', '#7b3fb5', '#00838f', '#6d4c41', '#546e7a', '#c2185b'];
  const WINDOW = 300; // points kept (10 minutes at one snapshot every 2 s)
  let charts = null;
  let abort = null;
  let last = null;
  let selected = null;
  const history = { t: [], status: {}, activePerMin: [], mibPerS: [], depth: {}, age: {} };

  function chart(el, names, height = 180) {
    const series = [{}].concat(names.map((n, i) => ({ label: n, stroke: COLORS[i % COLORS.length], width: 1.5 })));
    const width = Math.max(300, el.clientWidth || 500);
    return new uPlot({ width, height, series, axes: [{}, { size: 50 }], legend: { live: false } }, [[], ...names.map(() => [])], el);
  }

  function setupCharts(snapshot) {
    const statuses = STATUSES.filter((s) => s in snapshot.statuses);
    charts = {
      statuses,
      status: chart($('chart-status'), statuses),
      throughput: chart($('chart-throughput'), ['images active / min', 'MiB/s ingested (this API)']),
      depth: chart($('chart-depth'), STAGES),
      age: chart($('chart-age'), STAGES),
      latency: new uPlot({
        width: Math.max(300, $('chart-latency').clientWidth || 500), height: 160,
        // p95 first, p50 drawn over it: the taller bar stays visible behind the shorter.
        series: [{}, { label: 'p95 ms', stroke: COLORS[3], paths: uPlot.paths.bars({ size: [0.4] }), fill: COLORS[3] + '66' }, { label: 'p50 ms', stroke: COLORS[0], paths: uPlot.paths.bars({ size: [0.4] }), fill: COLORS[0] + 'cc' }],
        scales: { x: { time: false, range: [-0.5, 3.5] } },
        axes: [{ values: (_u, ticks) => ticks.map((t) => STAGES[t] ?? '') , splits: () => [0, 1, 2, 3] }, { size: 50 }],
      }, [[0, 1, 2, 3], [0, 0, 0, 0], [0, 0, 0, 0]], $('chart-latency')),
    };
  }

  function push(arr, v) { arr.push(v); if (arr.length > WINDOW) arr.shift(); }

  function onSnapshot(s) {
    if (!charts) setupCharts(s);
    const t = Date.parse(s.at) / 1000;
    const prev = last;
    last = s;
    push(history.t, t);
    for (const st of charts.statuses) push(history.status[st] ??= [], s.statuses[st] ?? 0);
    const dt = prev ? t - Date.parse(prev.at) / 1000 : 0;
    push(history.activePerMin, prev && dt > 0 ? Math.max(0, (s.statuses.active - prev.statuses.active) * 60 / dt) : 0);
    push(history.mibPerS, prev && dt > 0 ? Math.max(0, (s.counters.ingested_bytes - prev.counters.ingested_bytes) / dt / 2 ** 20) : 0);
    for (const stage of STAGES) {
      const q = s.queues.find((x) => x.stage === stage) ?? { waiting: 0, oldestWaitingSeconds: 0 };
      push(history.depth[stage] ??= [], q.waiting);
      push(history.age[stage] ??= [], q.oldestWaitingSeconds);
    }
    charts.status.setData([history.t, ...charts.statuses.map((st) => history.status[st])]);
    charts.throughput.setData([history.t, history.activePerMin, history.mibPerS]);
    charts.depth.setData([history.t, ...STAGES.map((st) => history.depth[st])]);
    charts.age.setData([history.t, ...STAGES.map((st) => history.age[st])]);
    charts.latency.setData([[0, 1, 2, 3], STAGES.map((st) => s.stage_latency_ms[st].p95 ?? 0), STAGES.map((st) => s.stage_latency_ms[st].p50 ?? 0)]);
    renderCards(s);
    renderTables(s);
    if (selected) {
      const fresh = s.recent.concat(s.failed).find((i) => i.id === selected.id);
      if (fresh) showDetail(fresh);
    }
  }

  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) (k === 'class' ? (e.className = v) : e.setAttribute(k, v));
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? '')));
    return e;
  }

  // Characters that change how the text around them is drawn without being seen: bidi controls
  // (U+202E turns "safe\u202Egpj.exe" into "safeexe.jpg"), the marks U+200E, U+200F, U+061C, and
  // C0/C1 controls (NUL, BEL draw as boxes or nothing).
  const HIDDEN = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
  /** A user-supplied string (image name, format, failure text) as plain visible text: each hidden character as ⟨U+XXXX⟩. */
  const visible = (text) => String(text ?? '').replace(HIDDEN, (c) => `⟨U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}⟩`);
  /** A user-supplied string isolated from the text around it (bdi) and shown with visible(). */
  const userText = (text) => el('bdi', {}, visible(text));

  function renderCards(s) {
    const always = ['queued', 'importing', 'active', 'killed'];
    $('status-cards').replaceChildren(...Object.entries(s.statuses).filter(([st, n]) => n > 0 || always.includes(st)).map(([st, n]) => el('div', { class: `card status-${st}` }, el('b', {}, n), st)));
  }

  const ms = (v) => (v === null || v === undefined ? '–' : v < 1000 ? `${v} ms` : `${(v / 1000).toFixed(1)} s`);
  const bytes = (v) => (v === null || v === undefined ? '–' : v < 2 ** 20 ? `${(v / 1024).toFixed(0)} KiB` : v < 2 ** 30 ? `${(v / 2 ** 20).toFixed(1)} MiB` : `${(v / 2 ** 30).toFixed(2)} GiB`);

  function renderTables(s) {
    $('latency').replaceChildren(el('tr', {}, el('th', {}, 'stage'), el('th', {}, 'p50'), el('th', {}, 'p95'), el('th', {}, 'runs')),
      ...STAGES.map((st) => el('tr', {}, el('td', {}, st), el('td', {}, ms(s.stage_latency_ms[st].p50)), el('td', {}, ms(s.stage_latency_ms[st].p95)), el('td', {}, s.stage_latency_ms[st].n))));
    $('processes').replaceChildren(el('tr', {}, el('th', {}, 'role'), el('th', {}, 'host'), el('th', {}, 'pid'), el('th', {}, 'up since'), el('th', {}, 'memory')),
      ...s.processes.map((p) => el('tr', {}, el('td', {}, p.role), el('td', {}, p.host), el('td', {}, p.pid), el('td', {}, new Date(p.started_at).toLocaleTimeString()), el('td', {}, bytes(p.rss_bytes)))));
    // Each snapshot rebuilds the rows: a keyboard user's focused row is found again by its image id.
    const focused = document.activeElement?.closest?.('table.images tr[data-id]');
    const refocus = focused && { table: focused.closest('table').id, id: focused.dataset.id };
    for (const [id, list] of [['recent', s.recent], ['failed', s.failed]]) {
      $(id).replaceChildren(el('tr', {}, el('th', {}, 'name'), el('th', {}, 'status'), el('th', {}, 'format'), el('th', {}, 'size'), el('th', {}, 'updated')), ...list.map(imageRow));
    }
    if (refocus) $(refocus.table).querySelector(`tr[data-id="${CSS.escape(refocus.id)}"]`)?.focus();
  }

  /** A row of #recent or #failed: opens the image's per-stage view by mouse, Enter or Space. */
  function imageRow(img) {
    const name = img.name ?? img.id.slice(0, 8);
    const row = el('tr', { 'data-id': img.id, tabindex: '0', 'aria-label': `${visible(name)}, ${img.status}: open its pipeline stages` },
      el('td', {}, userText(name)), el('td', { class: `status-${img.status}` }, img.status), el('td', {}, visible(img.disk_format ?? '')), el('td', {}, bytes(img.size)), el('td', {}, new Date(img.updated_at).toLocaleTimeString()));
    row.addEventListener('click', () => showDetail(img));
    row.addEventListener('keydown', (e) => {
      if (e.key !== 'Enter' && e.key !== ' ') return;
      e.preventDefault(); // Space would scroll the page
      showDetail(img);
      $('detail-title').focus();
    });
    return row;
  }

  /** A stage's time: as recorded, else from its start and end (older failed stages recorded no duration; a pending one's end is a failed attempt's). */
  function stageMs(x) {
    if (x.duration_ms !== null && x.duration_ms !== undefined) return x.duration_ms;
    if (x.started_at && x.ended_at && x.status !== 'pending') return Math.max(0, Date.parse(x.ended_at) - Date.parse(x.started_at));
    return null;
  }

  function showDetail(img) {
    selected = img;
    $('detail').hidden = false;
    $('detail-title').replaceChildren(userText(img.name ?? '(no name)'), ` · ${img.id} · ${img.status}`);
    $('detail-failure').replaceChildren(...(img.failure ? [`Failed at ${img.failure.stage}: ${img.failure.code}: `, userText(img.failure.message)] : []));
    const p = img.pipeline;
    const rows = [];
    if (p) {
      const t0 = Date.parse(p.started_at);
      const ends = STAGES.map((st) => p.stages[st]).map((x) => Date.parse(x.ended_at ?? x.started_at ?? p.started_at));
      const span = Math.max(1, Math.max(...ends, Date.parse(img.updated_at)) - t0);
      for (const st of STAGES) {
        const x = p.stages[st];
        const start = x.started_at ? Date.parse(x.started_at) - t0 : null;
        const end = x.ended_at ? Date.parse(x.ended_at) - t0 : start;
        const bar = el('div', { class: `wf-bar ${x.status}` });
        if (start !== null) { bar.style.left = `${(100 * start) / span}%`; bar.style.width = `${(100 * Math.max(0, end - start)) / span}%`; } else bar.hidden = true;
        rows.push(el('div', { class: 'wf-row', 'data-stage': st }, el('span', { class: 'wf-label' }, `${st}${x.attempts > 1 ? ` ×${x.attempts}` : ''}`), el('div', { class: 'wf-track' }, bar), el('span', { class: 'wf-time' }, `${x.status} ${ms(stageMs(x))}`)));
      }
    } else if (img.failure && img.failure.run !== undefined) {
      // An import that failed before its bytes were in (web-download, location): a run, no stages.
      rows.push(el('p', {}, `Run ${img.failure.run} (${img.failure.method ?? 'import'}) failed before its data was in: no stage ran.`));
    } else rows.push(el('p', {}, 'No pipeline run yet.'));
    $('waterfall').replaceChildren(...rows);
    const trace = $('detail-trace');
    trace.replaceChildren();
    if (config.traceUiUrl) {
      const href = `${config.traceUiUrl}/search?service=pir-worker&tags=${encodeURIComponent(JSON.stringify({ 'pir.image.id': img.id }))}`;
      trace.append(el('a', { href, target: '_blank', rel: 'noopener' }, 'Open the trace'));
    }
  }

  async function connect(token) {
    abort?.abort();
    abort = new AbortController();
    $('state').textContent = 'connecting…';
    const response = await fetch('/ops/api/stream', { headers: { 'x-auth-token': token }, signal: abort.signal }).catch((e) => ({ ok: false, status: 0, statusText: e.message }));
    if (!response.ok) {
      const body = response.json ? await response.json().catch(() => null) : null;
      signOut(body?.error?.message ?? `PIR answered ${response.status} ${response.statusText}`);
      return;
    }
    $('login').hidden = true;
    $('board').hidden = false;
    $('logout').hidden = false;
    $('state').textContent = 'live';
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
          if (event === 'snapshot') onSnapshot(JSON.parse(data));
          else if (event === 'problem') $('state').textContent = `problem: ${JSON.parse(data).message}`;
        }
      }
    } catch (e) {
      if (abort.signal.aborted) return;
    }
    $('state').textContent = 'disconnected; retrying…';
    setTimeout(() => { const t = sessionStorage.getItem('pir-token'); if (t) void connect(t); }, 2000);
  }

  function signOut(message = '') {
    abort?.abort();
    sessionStorage.removeItem('pir-token');
    $('login').hidden = false;
    $('board').hidden = true;
    $('logout').hidden = true;
    $('state').textContent = 'signed out';
    $('login-error').textContent = message;
  }

  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('token').value.trim();
    sessionStorage.setItem('pir-token', token);
    $('token').value = '';
    void connect(token);
  });
  $('logout').addEventListener('click', () => signOut());
  const saved = sessionStorage.getItem('pir-token');
  if (saved) void connect(saved);
})();
