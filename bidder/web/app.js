// bidpulse operator dashboard. Plain JavaScript, no dependencies: it reads
// GET /v1/snapshot/stream (server-sent events), /readyz, /v1/multiplier,
// /v1/rates and, with the admin token typed in, /v1/overrides. A token typed
// in (kept in this page's memory only) goes with every request: the read
// token, when the service has one (--read-token), is what the stream, the
// rates and explain need; the admin token serves both. Every value from the
// service reaches the page as text (textContent), never as HTML.
'use strict';

(() => {
  // The dimensions, in canonical order (windows.DimNames; /dashboard/meta
  // lists them too, and TestDashboardDims holds this list and the forms'
  // inputs to it).
  const DIMS = ['campaign', 'creative', 'placement', 'device', 'country', 'site'];
  const SPANS = ['1m', '5m', '15m', '1h', '24h'];
  const HISTORY = 300;   // points kept for charts and sparklines
  const PAGE = 50;       // table rows per page
  const READY_POLL_MS = 2000;
  const RETRY_MS = 3000;   // reconnection delay after an error answer

  const $ = (id) => document.getElementById(id);

  const state = {
    meta: null,
    query: null,          // {level, window, sort, limit, campaign, min_impressions}
    stream_ac: null,      // aborts the stream being read
    retryMs: 2000,        // reconnection delay the stream asked for (its "retry:")
    retryTimer: 0,
    stream: 'connecting', // connecting | live | stale | down
    streamWhy: '',
    lastFrame: null,
    lastFrameAt: 0,
    tick: 0,
    rows: [],
    page: 0,
    selected: '',
    spark: new Map(),     // row id -> [[tick, multiplier], ...]
    series: { t: [], counted: [], duplicate: [], rejected: [], late: [], p50: [], p99: [] },
    readyz: null,         // {ok, status, body} of the last /readyz poll
    token: null,
    overrides: [],
    inspected: null,
  };

  // ---- formatting -------------------------------------------------------

  const nf = new Intl.NumberFormat('en-US');
  const fmtInt = (n) => (n == null ? '–' : nf.format(Math.round(n)));
  const fmtRate = (n) => {
    if (n == null) return '–';
    if (n >= 100) return nf.format(Math.round(n));
    return n.toFixed(n >= 10 ? 1 : 2);
  };
  const fmtPct = (x) => (x == null ? '–' : (x * 100).toFixed(2) + '%');
  const fmtMult = (x) => (x == null ? '–' : Number(x).toFixed(3));
  const fmtMs = (x) => {
    if (x == null) return '–';
    if (x < 0.01) return (x * 1000).toFixed(1) + ' µs';
    if (x < 1) return (x * 1000).toFixed(0) + ' µs';
    return x.toFixed(x < 10 ? 2 : 0) + ' ms';
  };
  const fmtBytes = (n) => {
    if (n == null) return '–';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + ' ' + u[i];
  };
  const fmtDuration = (ms) => {
    if (ms == null) return '–';
    if (ms < 1000) return ms + ' ms';
    if (ms < 120000) return (ms / 1000).toFixed(1) + ' s';
    return (ms / 60000).toFixed(1) + ' min';
  };
  const clock = (d) => d.toTimeString().slice(0, 8);

  // el builds an element; children are nodes or strings (text).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v == null || v === false) continue;
        if (k === 'class') e.className = v;
        else if (k === 'text') e.textContent = v;
        else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
        else e.setAttribute(k, v === true ? '' : v);
      }
    }
    for (const c of children) {
      if (c == null) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  const SVG = 'http://www.w3.org/2000/svg';
  function svgEl(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }
  function setPill(id, cls, text) {
    const p = $(id);
    p.className = 'pill' + (cls ? ' ' + cls : '');
    p.textContent = text;
  }

  // ---- HTTP -------------------------------------------------------------

  function authHeaders() {
    return state.token ? { Authorization: 'Bearer ' + state.token } : {};
  }

  async function api(method, path, body) {
    const opts = { method, headers: authHeaders(), cache: 'no-store' };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(path, opts);
    } catch (e) {
      return { status: 0, body: { error: 'service unreachable' } };
    }
    let json = null;
    try { json = await r.json(); } catch (e) { json = { error: r.statusText }; }
    return { status: r.status, body: json };
  }

  function dimsQuery(vals) {
    const p = new URLSearchParams();
    for (const d of DIMS) if (vals[d]) p.set(d, vals[d]);
    return p;
  }

  // ---- the stream ---------------------------------------------------------

  function streamParams() {
    const q = state.query;
    const p = new URLSearchParams();
    p.set('level', q.level);
    p.set('window', q.window);
    p.set('sort', q.sort);
    p.set('limit', q.limit);
    if (q.campaign) p.set('campaign', q.campaign);
    if (q.min_impressions !== '' && q.min_impressions != null) p.set('min_impressions', q.min_impressions);
    return p;
  }

  function connect() {
    if (state.stream_ac) state.stream_ac.abort();
    clearTimeout(state.retryTimer);
    const params = streamParams();
    history.replaceState(null, '', '?' + params.toString());
    const url = '/v1/snapshot/stream?' + params.toString();
    const ac = new AbortController();
    state.stream_ac = ac;
    setStream(state.lastFrame ? 'down' : 'connecting', state.lastFrame ? 'reconnecting' : '');
    readStream(url, ac);
  }

  // readStream reads the server-sent events with fetch rather than an
  // EventSource, which can send no Authorization header (the read token)
  // and hides why a stream was refused. It reconnects after an end or an
  // error, unless the query is wrong (400) or a token is missing (401).
  async function readStream(url, ac) {
    let why = 'connection lost; reconnecting';
    let retry = true;
    let delay = state.retryMs;
    const mine = () => ac === state.stream_ac && !ac.signal.aborted;
    try {
      const r = await fetch(url, { signal: ac.signal, cache: 'no-store', headers: authHeaders() });
      if (!r.ok) {
        let j = null;
        try { j = await r.json(); } catch (e) { /* not JSON */ }
        why = r.status + ': ' + ((j && j.error) || r.statusText);
        retry = r.status !== 400 && r.status !== 401;
        delay = Math.max(RETRY_MS, 1000 * (Number(r.headers.get('Retry-After')) || 0));
        if (r.status === 401) {
          why += state.token ? '' : ' — type the token in the Overrides panel';
          if (!state.token) ovStatus('error', 'This service needs its read token (or the admin token) to show its data: type it above.');
        }
      } else {
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        let shutdown = false;
        for (;;) {
          const { value, done } = await reader.read();
          if (done || !mine()) break;
          buf += value;
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            if (onEvent(block)) shutdown = true;
          }
        }
        if (shutdown) why = 'the service shut down; reconnecting';
      }
    } catch (e) {
      why = 'service unreachable';
    }
    if (!mine()) return;
    setStream('down', why);
    if (retry) state.retryTimer = setTimeout(connect, delay);
  }

  // onEvent handles one event block of the stream; true for "shutdown".
  function onEvent(block) {
    let name = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) name = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      else if (line.startsWith('retry:')) {
        const ms = Number(line.slice(6));
        if (ms > 0) state.retryMs = ms;
      }
    }
    if (name === 'shutdown') {
      setStream('down', 'the service is shutting down');
      return true;
    }
    if (name === 'snapshot' && data.length) {
      let f;
      try { f = JSON.parse(data.join('\n')); } catch (err) { return false; }
      onFrame(f);
    }
    return false;
  }

  function setStream(s, why) {
    state.stream = s;
    state.streamWhy = why || '';
    const labels = {
      connecting: ['warn', 'stream: connecting'],
      live: ['good', 'stream: live'],
      stale: ['bad', 'stream: stale'],
      down: ['bad', 'stream: disconnected'],
    };
    const [cls, text] = labels[s];
    setPill('stream-status', cls, text);
    updateBanner();
  }

  function updateBanner() {
    const msgs = [];
    let severe = false;
    if (state.stream === 'down' || state.stream === 'stale') {
      severe = true;
      const since = state.lastFrameAt ? ' — figures below are frozen as of ' + clock(new Date(state.lastFrameAt)) : '';
      const what = state.stream === 'stale' ? 'Live stream stalled (no update for ' +
        Math.round((Date.now() - state.lastFrameAt) / 1000) + ' s)' : 'Live stream disconnected';
      msgs.push(what + (state.streamWhy ? ' (' + state.streamWhy + ')' : '') + since + '.');
    }
    const rz = state.readyz;
    if (rz && !rz.ok) {
      severe = true;
      if (rz.status === 0) {
        msgs.push('Service unreachable: /readyz does not answer.');
      } else {
        let why = (rz.body && rz.body.reason) || ('HTTP ' + rz.status);
        const rep = rz.body && rz.body.replay;
        if (rep && typeof rep.progress === 'number') why += ' (' + (rep.progress * 100).toFixed(1) + '%)';
        msgs.push('Service NOT READY: ' + why + ' — /readyz answers ' + rz.status + '.');
      }
    }
    const b = $('banner');
    b.textContent = msgs.join(' ');
    b.hidden = msgs.length === 0;
    b.className = 'banner' + (severe ? '' : ' warn');
    $('main').classList.toggle('frozen', state.stream === 'down' || state.stream === 'stale');
  }

  // The stream is stale when no frame came for three intervals.
  function watchdog() {
    if (state.stream !== 'live' || !state.meta) return;
    const limit = 3 * state.meta.sse_interval_ms + 1000;
    if (Date.now() - state.lastFrameAt > limit) setStream('stale', '');
  }

  async function pollReady() {
    let rz;
    try {
      const r = await fetch('/readyz', { cache: 'no-store' });
      let body = null;
      try { body = await r.json(); } catch (e) { /* not JSON */ }
      rz = { ok: r.status === 200, status: r.status, body };
    } catch (e) {
      rz = { ok: false, status: 0, body: null };
    }
    showReady(rz);
  }

  function showReady(rz) {
    state.readyz = rz;
    if (rz.status === 0) {
      setPill('ready-status', 'bad', 'readyz: unreachable');
      setPill('nats-status', 'bad', 'NATS: ?');
    } else {
      setPill('ready-status', rz.ok ? 'good' : 'bad', rz.ok ? 'readyz: ready' :
        'readyz: NOT READY' + (rz.body && rz.body.reason ? ' (' + rz.body.reason + ')' : ''));
      const nats = rz.body && rz.body.nats;
      if (nats) {
        setPill('nats-status', nats.connected ? 'good' : 'bad', nats.connected ? 'NATS: connected' : 'NATS: disconnected');
        setPill('mode', 'muted', 'ingest: ' + (nats.mode || '?'));
      }
    }
    updateBanner();
  }

  // ---- frames -------------------------------------------------------------

  function onFrame(f) {
    state.lastFrame = f;
    state.lastFrameAt = Date.now();
    state.tick++;
    document.body.dataset.seq = String(f.seq); // lets a test wait for the next frame
    if (state.stream !== 'live') setStream('live', '');
    if (f.readyz) showReady({ ok: !!f.ready, status: f.ready ? 200 : 503, body: f.readyz });
    $('updated').textContent = 'updated ' + clock(new Date()) + ' · service time ' + (f.time || '');
    updateTiles(f);
    pushSeries(f);
    drawCharts();
    updateRows(f.snapshot);
    renderTable();
  }

  function updateTiles(f) {
    const r = f.rates || {};
    const st = f.stats || {};
    $('ev-counted').textContent = fmtRate(r.counted);
    $('ev-types').textContent = 'impressions ' + fmtRate(r.impression) + ' · clicks ' + fmtRate(r.click) +
      ' · conversions ' + fmtRate(r.conversion);

    const rows = [
      ['counted', r.counted, st.counted, false],
      ['duplicate', r.duplicate, st.duplicates, false],
      ['rejected', r.rejected, st.rejected_total, r.rejected > 0],
      ['late', r.late, st.late, r.late > 0],
      ['future', r.future, st.future, r.future > 0],
      ['overflow', r.overflow, st.overflow, r.overflow > 0],
      ['dropped msgs', r.dropped, st.dropped_messages, r.dropped > 0],
    ];
    const tb = $('outcomes').tBodies[0];
    tb.replaceChildren(...rows.map(([name, rate, total, alert]) => el('tr', { class: alert ? 'alert' : null, 'data-outcome': name },
      el('td', { text: name }), el('td', { class: 'num', text: fmtRate(rate) }),
      el('td', { class: 'num muted', text: fmtInt(total) }))));

    // The spike buffer: the stream (JetStream mode) or the subscription.
    const buf = st.buffer || {};
    const fill = Number(buf.fill || 0);
    const fillCls = fill >= 0.8 ? 'bad' : fill >= 0.5 ? 'warn' : '';
    $('buf-fill').textContent = (fill * 100).toFixed(fill < 0.1 ? 2 : 1) + '%';
    $('buf-fill').className = 'big ' + fillCls;
    $('buf-bar').style.width = Math.min(100, fill * 100).toFixed(2) + '%';
    $('buf-bar').className = fillCls;
    let detail = (buf.kind ? buf.kind + ': ' : '') + fmtInt(buf.messages) + ' msgs';
    if (buf.max_messages) detail += ' of ' + fmtInt(buf.max_messages);
    detail += ' · ' + fmtBytes(buf.bytes);
    if (buf.max_bytes > 0) detail += ' of ' + fmtBytes(buf.max_bytes);
    $('buf-detail').textContent = detail;

    const hasLag = Object.prototype.hasOwnProperty.call(st, 'ingest_lag_ms');
    $('tile-lag').hidden = !hasLag;
    if (hasLag) {
      const lag = st.ingest_lag_ms;
      $('lag').textContent = fmtDuration(lag);
      $('lag').className = 'big ' + (lag >= 10000 ? 'bad' : lag >= 2000 ? 'warn' : '');
    }

    const bid = f.bid || {};
    $('bid-rps').textContent = fmtRate(bid.rps);
    $('bid-lat').textContent = 'p50 ' + fmtMs(bid.p50_ms) + ' · p99 ' + fmtMs(bid.p99_ms) + ' · p99.9 ' + fmtMs(bid.p999_ms) +
      ' · batch ' + fmtRate(bid.batch_rps) + '/s';

    const keys = st.keys || 0;
    const maxKeys = st.max_keys || 0;
    $('keys').textContent = fmtInt(keys);
    const kf = maxKeys ? keys / maxKeys : 0;
    $('keys-bar').style.width = Math.min(100, kf * 100).toFixed(2) + '%';
    $('keys-bar').className = kf >= 0.9 ? 'bad' : kf >= 0.7 ? 'warn' : '';
    $('keys-detail').textContent = 'of ' + fmtInt(maxKeys) + ' max · evicted ' + fmtInt(st.keys_evicted);
  }

  function pushSeries(f) {
    const s = state.series;
    const r = f.rates || {};
    const bid = f.bid || {};
    const push = (arr, v) => { arr.push(v); if (arr.length > HISTORY) arr.shift(); };
    push(s.t, Date.now());
    push(s.counted, r.counted || 0);
    push(s.duplicate, r.duplicate || 0);
    push(s.rejected, r.rejected || 0);
    push(s.late, (r.late || 0) + (r.future || 0));
    push(s.p50, bid.p50_ms);
    push(s.p99, bid.p99_ms);
  }

  // lineChart draws series (arrays of numbers or null) over HISTORY slots.
  function lineChart(svg, series, unit) {
    const W = 600, H = 150, top = 8, bottom = 16;
    let max = 0;
    for (const s of series) for (const v of s.values) if (v != null && v > max) max = v;
    max = niceMax(max);
    const kids = [];
    for (let i = 0; i <= 4; i++) {
      const y = top + (H - top - bottom) * i / 4;
      kids.push(svgEl('line', { x1: 0, x2: W, y1: y, y2: y, class: 'grid' }));
    }
    const lbl = svgEl('text', { x: 4, y: top + 10, class: 'axis' });
    lbl.textContent = fmtAxis(max) + (unit ? ' ' + unit : '');
    kids.push(lbl);
    const lbl0 = svgEl('text', { x: 4, y: H - 4, class: 'axis' });
    lbl0.textContent = '0';
    kids.push(lbl0);
    series.forEach((s, k) => {
      const n = s.values.length;
      let d = '';
      let pen = false;
      for (let i = 0; i < n; i++) {
        const v = s.values[i];
        if (v == null) { pen = false; continue; }
        const x = W * (HISTORY - n + i) / (HISTORY - 1);
        const y = H - bottom - (H - top - bottom) * (max ? v / max : 0);
        d += (pen ? 'L' : 'M') + x.toFixed(1) + ' ' + y.toFixed(1);
        pen = true;
      }
      kids.push(svgEl('path', { d: d || 'M0 0', class: 'line s' + (s.color == null ? k : s.color) }));
    });
    svg.replaceChildren(...kids);
  }

  function niceMax(v) {
    if (v <= 0) return 1;
    v *= 1.1; // headroom: a steady line does not run along the top edge
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }
  const fmtAxis = (v) => (v >= 1000 ? nf.format(v) : String(Number(v.toPrecision(3))));

  function legend(id, items) {
    $(id).replaceChildren(...items.map(([name, k, last]) =>
      el('span', null, el('i', { class: 's' + k }), name + (last != null ? ' ' + last : ''))));
  }

  function drawCharts() {
    const s = state.series;
    const last = (a) => a.length ? a[a.length - 1] : null;
    lineChart($('chart-events'), [
      { values: s.counted, color: 0 }, { values: s.duplicate, color: 1 },
      { values: s.rejected, color: 2 }, { values: s.late, color: 3 },
    ], '/s');
    legend('legend-events', [['counted', 0, fmtRate(last(s.counted))], ['duplicate', 1, fmtRate(last(s.duplicate))],
      ['rejected', 2, fmtRate(last(s.rejected))], ['late + future', 3, fmtRate(last(s.late))]]);
    lineChart($('chart-latency'), [{ values: s.p50, color: 0 }, { values: s.p99, color: 2 }], 'ms');
    legend('legend-latency', [['p50', 0, fmtMs(last(s.p50))], ['p99', 2, fmtMs(last(s.p99))]]);
  }

  // ---- the top keys table ---------------------------------------------------

  function rowId(level, key) {
    return level + '|' + DIMS.filter((d) => key[d] != null).map((d) => key[d]).join('\u0000');
  }

  function updateRows(snap) {
    if (!snap) return;
    const level = snap.level;
    state.rows = (snap.keys || []).map((k) => ({ ...k, level, id: rowId(level, k.key) }));
    // Multiplier history for the sparklines.
    const seen = new Set();
    for (const r of state.rows) {
      let h = state.spark.get(r.id);
      if (!h) { h = []; state.spark.set(r.id, h); }
      h.push([state.tick, r.multiplier]);
      while (h.length && h[0][0] <= state.tick - HISTORY) h.shift();
      seen.add(r.id);
    }
    for (const [id, h] of state.spark) {
      if (seen.has(id)) continue;
      while (h.length && h[0][0] <= state.tick - HISTORY) h.shift();
      if (!h.length) state.spark.delete(id);
    }
  }

  function filteredRows() {
    const f = $('q-filter').value.trim().toLowerCase();
    if (!f) return state.rows;
    return state.rows.filter((r) => Object.values(r.key).some((v) => String(v).toLowerCase().includes(f)));
  }

  function overrideOf(level, key) {
    return state.overrides.find((o) => o.level === level && DIMS.every((d) => (o[d] || null) === (key[d] || null)));
  }

  function sparkline(id) {
    const h = state.spark.get(id) || [];
    const svg = svgEl('svg', { class: 'spark', viewBox: '0 0 110 22', preserveAspectRatio: 'none' });
    if (!h.length) return svg;
    let lo = 1, hi = 1;
    for (const [, v] of h) { if (v < lo) lo = v; if (v > hi) hi = v; }
    const pad = (hi - lo) * 0.1 || 0.05;
    lo -= pad; hi += pad;
    // The x axis covers the updates seen so far (at least 30), up to HISTORY.
    const span = Math.min(HISTORY, Math.max(30, state.tick));
    const y = (v) => (22 - 2 - 18 * (v - lo) / (hi - lo)).toFixed(1);
    const x = (t) => (110 * (t - (state.tick - span + 1)) / (span - 1)).toFixed(1);
    svg.append(svgEl('line', { x1: 0, x2: 110, y1: y(1), y2: y(1), class: 'ref' }));
    let d = '';
    let prev = null;
    for (const [t, v] of h) {
      if (t <= state.tick - span) continue;
      d += (prev != null && t === prev + 1 ? 'L' : 'M') + x(t) + ' ' + y(v);
      prev = t;
    }
    if (h.length === 1) d += 'L' + x(h[0][0]) + ' ' + y(h[0][1]);
    svg.append(svgEl('path', { d, class: 'line' }));
    const last = h[h.length - 1][1];
    svg.append(el('title', null, 'multiplier over the last ' + h.length + ' updates; now ' + fmtMult(last)));
    return svg;
  }

  function renderTable() {
    const snap = state.lastFrame && state.lastFrame.snapshot;
    if (!snap) return;
    const dims = snap.level.split('/');
    const thead = $('keys-table').tHead;
    const cols = [...dims.map((d) => [d, '']), ['impressions', 'num'], ['clicks', 'num'], ['conversions', 'num'],
      ['ctr', 'num'], ['cvr', 'num'], ['multiplier', 'num'], ['trend', '']];
    thead.replaceChildren(el('tr', null, ...cols.map(([c, cls]) => el('th', { class: cls || null, text: c }))));

    const rows = filteredRows();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    if (state.page >= pages) state.page = pages - 1;
    const start = state.page * PAGE;
    const view = rows.slice(start, start + PAGE);
    const body = view.map((r) => {
      const ov = overrideOf(r.level, r.key);
      const m = r.multiplier;
      const mcls = 'num mult' + (m === 0 ? ' zero' : m > 1.0005 ? ' up' : m < 0.9995 ? ' down' : '');
      const tr = el('tr', { 'data-id': r.id, class: r.id === state.selected ? 'selected' : null, title: 'click to inspect' },
        ...dims.map((d) => el('td', { class: 'key', 'data-col': d, title: r.key[d], text: r.key[d] })),
        el('td', { class: 'num', 'data-col': 'impressions', text: fmtInt(r.impressions) }),
        el('td', { class: 'num', 'data-col': 'clicks', text: fmtInt(r.clicks) }),
        el('td', { class: 'num', 'data-col': 'conversions', text: fmtInt(r.conversions) }),
        el('td', { class: 'num', 'data-col': 'ctr', text: fmtPct(r.ctr) }),
        el('td', { class: 'num', 'data-col': 'cvr', text: fmtPct(r.cvr) }),
        el('td', { class: mcls, 'data-col': 'multiplier' }, fmtMult(m), ov ? el('span', { class: 'badge', title: 'operator override', text: 'override' }) : null),
        el('td', { 'data-col': 'trend' }, sparkline(r.id)));
      tr.addEventListener('click', () => {
        state.selected = r.id;
        const vals = {};
        for (const d of dims) vals[d] = r.key[d];
        inspect(vals);
        renderTable();
      });
      return tr;
    });
    if (!body.length) {
      body.push(el('tr', null, el('td', { colspan: cols.length, class: 'muted',
        text: state.rows.length ? 'no key matches the filter' : 'no key with data at this level and window' })));
    }
    $('keys-table').tBodies[0].replaceChildren(...body);
    $('pg-info').textContent = 'page ' + (state.page + 1) + ' / ' + pages;
    $('pg-first').disabled = $('pg-prev').disabled = state.page === 0;
    $('pg-next').disabled = $('pg-last').disabled = state.page >= pages - 1;
    const q = state.query;
    $('rows-info').textContent = rows.length === state.rows.length
      ? fmtInt(rows.length) + ' keys (top ' + q.limit + ' by ' + q.sort + ', ' + snap.window + ')'
      : fmtInt(rows.length) + ' of ' + fmtInt(state.rows.length) + ' keys match';
  }

  // ---- the key inspector ----------------------------------------------------

  async function inspect(vals) {
    for (const d of DIMS) $('s-' + d).value = vals[d] || '';
    if (!vals.campaign) {
      $('s-result').replaceChildren(el('span', { class: 'error', text: 'campaign is required' }));
      return;
    }
    state.inspected = vals;
    const q = dimsQuery(vals);
    const [m, r] = await Promise.all([api('GET', '/v1/multiplier?' + q + '&explain=1'), api('GET', '/v1/rates?' + q)]);
    if (state.inspected !== vals) return; // a newer search won
    renderInspect(vals, m, r);
  }

  function renderInspect(vals, m, r) {
    const out = el('div', { class: 'result' });
    if (m.status !== 200) {
      out.append(el('div', { class: 'error', text: 'multiplier: ' + (m.body && m.body.error) }));
      $('s-result').replaceChildren(out);
      return;
    }
    const a = m.body;
    const ex = a.explain || {};
    out.append(el('div', { class: 'headline', id: 's-headline' }, 'multiplier ', el('b', { id: 's-multiplier', text: fmtMult(a.multiplier) }),
      a.level === 'none' ? ' — no level with impressions in ' + a.window + ': neutral' :
        ' at level ' + a.level + ' over ' + a.window + (ex.override != null ? ' (operator override)' : '')));
    const btn = el('button', { type: 'button', class: 'light', id: 's-override', text: 'Override this key…' });
    btn.addEventListener('click', () => {
      for (const d of DIMS) $('ov-' + d).value = vals[d] || '';
      $('ov-multiplier').value = a.multiplier;
      $('ov-multiplier').focus();
    });
    out.append(btn);

    out.append(el('h4', { text: 'Rates of this exact key' }));
    if (r.status === 200) {
      const w = r.body.windows || {};
      const cols = ['impressions', 'clicks', 'conversions', 'ctr', 'cvr', 'cost', 'value', 'cpa', 'roas'];
      const t = el('table', { class: 'data', id: 's-rates' },
        el('thead', null, el('tr', null, el('th', { text: r.body.level }), ...cols.map((c) => el('th', { class: 'num', text: c })))),
        el('tbody', null, ...SPANS.map((sp) => {
          const x = w[sp] || {};
          const cell = (c) => {
            if (c === 'ctr' || c === 'cvr') return fmtPct(x[c]);
            if (c === 'cost' || c === 'value' || c === 'cpa') return x[c] == null ? '–' : Number(x[c]).toFixed(2);
            if (c === 'roas') return x[c] == null ? '–' : Number(x[c]).toFixed(2);
            return fmtInt(x[c]);
          };
          return el('tr', { 'data-span': sp }, el('td', { text: sp }), ...cols.map((c) => el('td', { class: 'num', 'data-col': c, text: cell(c) })));
        })));
      out.append(el('div', { class: 'tablewrap' }, t));
    } else {
      out.append(el('div', { class: 'muted', text: (r.body && r.body.error) || 'no rates' }));
    }

    out.append(el('h4', { text: 'Explain' }));
    const kv = el('dl', { class: 'kv', id: 'explain' });
    const add = (k, v) => kv.append(el('dt', { text: k }), el('dd', { 'data-k': k, text: v }));
    add('policy', ex.policy || '–');
    add('window', ex.window || '–');
    add('before clamp', ex.before_clamp == null ? '–' : fmtMult(ex.before_clamp));
    add('clamp', Array.isArray(ex.clamp) ? '[' + ex.clamp.join(', ') + ']' : '–');
    add('override', ex.override == null ? 'none' : fmtMult(ex.override));
    out.append(kv);
    const factors = ex.factors || [];
    if (factors.length) {
      out.append(el('div', { class: 'tablewrap' }, el('table', { class: 'data', id: 's-factors' },
        el('thead', null, el('tr', null, el('th', { text: 'factor' }), el('th', { class: 'num', text: 'value' }), el('th', { text: 'inputs' }))),
        el('tbody', null, ...factors.map((f) => el('tr', null,
          el('td', { text: f.name }),
          el('td', { class: 'num', text: typeof f.value === 'number' ? Number(f.value.toPrecision(6)).toString() : String(f.value) }),
          el('td', { class: 'muted wrap', text: Object.entries(f.inputs || {}).map(([k, v]) =>
            k + '=' + (typeof v === 'number' ? Number(v.toPrecision(6)) : v)).join('  ') })))))));
    }
    $('s-result').replaceChildren(out);
  }

  // ---- overrides ------------------------------------------------------------

  function ovStatus(cls, text) {
    const s = $('ov-status');
    s.className = cls;
    s.textContent = text;
  }

  async function loadOverrides() {
    if (!state.token) return;
    const r = await api('GET', '/v1/overrides');
    if (r.status === 200) {
      state.overrides = r.body.overrides || [];
      $('ov-form').hidden = false;
      $('ov-table').hidden = false;
      renderOverrides();
      if (!$('ov-status').dataset.sticky) ovStatus('ok', 'unlocked · ' + state.overrides.length + ' override' + (state.overrides.length === 1 ? '' : 's'));
    } else {
      // With a read token on the service, the token typed in may be that
      // one: it stays, for the data, and only the overrides stay locked.
      const reader = state.meta && state.meta.read_token;
      if (r.status === 401 && !reader) state.token = null;
      $('ov-form').hidden = true;
      $('ov-table').hidden = true;
      state.overrides = [];
      ovStatus('error', r.status === 403 ? 'admin API disabled: start bidpulse with --admin-token' :
        r.status === 401 ? (reader ? 'not an admin token: the overrides need the admin token' : 'invalid admin token') :
          'cannot list overrides: ' + (r.body && r.body.error));
    }
  }

  function renderOverrides() {
    const rows = state.overrides.map((o) => {
      const vals = {};
      for (const d of DIMS) if (o[d] != null) vals[d] = o[d];
      const del = el('button', { type: 'button', class: 'light', text: 'Remove' });
      del.addEventListener('click', async () => {
        const r = await api('DELETE', '/v1/overrides?' + dimsQuery(vals));
        flash(r.status === 200 ? 'ok' : 'error', r.status === 200 ? 'override removed' : 'cannot remove: ' + (r.body && r.body.error));
        await loadOverrides();
        refreshInspect();
      });
      return el('tr', null,
        el('td', { class: 'key', text: DIMS.filter((d) => vals[d] != null).map((d) => d + '=' + vals[d]).join(' ') }),
        el('td', { text: o.level }),
        el('td', { class: 'num', text: fmtMult(o.multiplier) }),
        el('td', { text: o.expires_at || 'never' }),
        el('td', null, del));
    });
    if (!rows.length) rows.push(el('tr', null, el('td', { colspan: 5, class: 'muted', text: 'no override' })));
    $('ov-table').tBodies[0].replaceChildren(...rows);
    renderTable();
  }

  function flash(cls, text) {
    ovStatus(cls, text);
    $('ov-status').dataset.sticky = '1';
    setTimeout(() => { delete $('ov-status').dataset.sticky; }, 4000);
  }

  async function setOverride(ev) {
    ev.preventDefault();
    const body = {};
    for (const d of DIMS) {
      const v = $('ov-' + d).value.trim();
      if (v) body[d] = v;
    }
    const m = $('ov-multiplier').value.trim();
    body.multiplier = m === '' ? null : Number(m);
    const ttl = $('ov-ttl').value.trim();
    if (ttl) body.ttl = ttl;
    const r = await api('PUT', '/v1/overrides', body);
    if (r.status === 200) {
      flash('ok', 'override set: ' + r.body.level + ' × ' + fmtMult(r.body.multiplier) + (r.body.expires_at ? ' until ' + r.body.expires_at : ''));
    } else {
      flash('error', 'cannot set override: ' + (r.body && r.body.error));
    }
    await loadOverrides();
    refreshInspect();
  }

  function refreshInspect() {
    if (state.inspected) inspect(state.inspected);
  }

  // ---- setup ----------------------------------------------------------------

  function fillSelect(id, values, selected) {
    $(id).replaceChildren(...values.map((v) => el('option', { value: v, selected: String(v) === String(selected) }, v)));
    $(id).value = selected;
  }

  function initialQuery(meta) {
    const u = new URLSearchParams(location.search);
    const pick = (name, allowed, dflt) => {
      const v = u.get(name);
      return v != null && (!allowed || allowed.includes(v)) ? v : dflt;
    };
    const levels = meta.levels;
    const dfltLevel = levels.includes('campaign/placement') ? 'campaign/placement' :
      (levels.find((l) => l.includes('/')) || levels[0]);
    const limit = Number(u.get('limit'));
    return {
      level: pick('level', levels, dfltLevel),
      window: pick('window', meta.windows, meta.policy.window),
      sort: pick('sort', meta.sorts, 'impressions'),
      limit: limit >= 1 && limit <= meta.max_limit ? String(Math.floor(limit)) : '1000',
      campaign: u.get('campaign') || '',
      min_impressions: pick('min_impressions', null, String(meta.default_min_impressions)),
    };
  }

  function readQuery() {
    state.query = {
      level: $('q-level').value,
      window: $('q-window').value,
      sort: $('q-sort').value,
      limit: $('q-limit').value,
      campaign: $('q-campaign').value.trim(),
      min_impressions: $('q-min').value.trim(),
    };
    state.page = 0;
    connect();
  }

  async function init() {
    let meta = null;
    while (!meta) {
      const r = await api('GET', '/dashboard/meta');
      if (r.status === 200) meta = r.body;
      else {
        setStream('down', 'cannot load /dashboard/meta: ' + ((r.body && r.body.error) || r.status));
        await new Promise((res) => setTimeout(res, 3000));
      }
    }
    state.meta = meta;
    $('instance').textContent = meta.instance ? 'instance ' + meta.instance : '';
    const q = initialQuery(meta);
    state.query = q;
    fillSelect('q-level', meta.levels, q.level);
    fillSelect('q-window', meta.windows, q.window);
    fillSelect('q-sort', meta.sorts, q.sort);
    const limits = ['100', '500', '1000'];
    if (!limits.includes(q.limit)) limits.push(q.limit);
    fillSelect('q-limit', limits, q.limit);
    $('q-campaign').value = q.campaign;
    $('q-min').value = q.min_impressions;
    if (!meta.admin) {
      ovStatus('muted', 'The admin API is disabled: start bidpulse with --admin-token to set overrides here.');
    }
    if (meta.read_token) {
      ovStatus('muted', 'This service needs its read token (or the admin token) to show its data: type it above. It is kept in this page\'s memory only.');
    }

    for (const id of ['q-level', 'q-window', 'q-sort', 'q-limit']) $(id).addEventListener('change', readQuery);
    for (const id of ['q-campaign', 'q-min']) $(id).addEventListener('change', readQuery);
    $('query').addEventListener('submit', (e) => { e.preventDefault(); readQuery(); });
    $('q-filter').addEventListener('input', () => { state.page = 0; renderTable(); });
    const pages = () => Math.max(1, Math.ceil(filteredRows().length / PAGE));
    $('pg-first').addEventListener('click', () => { state.page = 0; renderTable(); });
    $('pg-prev').addEventListener('click', () => { state.page = Math.max(0, state.page - 1); renderTable(); });
    $('pg-next').addEventListener('click', () => { state.page = Math.min(pages() - 1, state.page + 1); renderTable(); });
    $('pg-last').addEventListener('click', () => { state.page = pages() - 1; renderTable(); });

    $('search').addEventListener('submit', (e) => {
      e.preventDefault();
      const vals = {};
      for (const d of DIMS) {
        const v = $('s-' + d).value.trim();
        if (v) vals[d] = v;
      }
      inspect(vals);
    });

    $('token-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const t = $('token').value;
      $('token').value = '';
      if (!t) return;
      state.token = t;
      ovStatus('muted', 'checking the token…');
      if (state.meta && state.meta.read_token) {
        connect();
        refreshInspect();
      }
      loadOverrides();
    });
    $('token-forget').addEventListener('click', () => {
      state.token = null;
      state.overrides = [];
      $('ov-form').hidden = true;
      $('ov-table').hidden = true;
      ovStatus('muted', 'Token forgotten.');
      renderTable();
    });
    $('ov-form').addEventListener('submit', setOverride);

    connect();
    pollReady();
    setInterval(pollReady, READY_POLL_MS);
    setInterval(watchdog, 500);
    setInterval(() => { if (state.stream === 'live') refreshInspect(); }, 5000);
    setInterval(loadOverrides, 10000);
  }

  init();
})();
