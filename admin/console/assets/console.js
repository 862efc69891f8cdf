// gatewayd web console: a client of the admin API. Every figure comes from
// the same /v1/... endpoints the CLI uses; the charts are drawn here, in SVG.
// Panels and charts are described by data (PANELS, CHARTS below): adding
// one is adding an entry.
'use strict';

(function () {
  const POLL_MS = 2000;
  const KEEP = 180; // samples per chart: six minutes at POLL_MS

  const state = { csrf: '', timer: null, samples: [], started: false };

  // ---- formatting ----
  const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  function bytes(n) {
    if (n === undefined || n === null) return '';
    let i = 0;
    n = Number(n);
    while (Math.abs(n) >= 1024 && i < UNITS.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(Math.round(n)) : n.toFixed(n < 10 ? 1 : 0).replace(/\.0$/, '')) + UNITS[i];
  }
  function rate(n) { return n ? bytes(n) + '/s' : 'unlimited'; }
  function duration(s) {
    if (s === null || s === undefined || !isFinite(s)) return '';
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm' + (s % 60 ? ' ' + (s % 60) + 's' : '');
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
    return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
  }
  function since(t) {
    if (!t || t.startsWith('0001-')) return null;
    return (Date.now() - Date.parse(t)) / 1000;
  }
  function ago(t) { const s = since(t); return s === null ? 'never' : duration(s) + ' ago'; }
  function when(t) { return t ? new Date(t).toLocaleString() : ''; }
  function pct(part, whole) { return whole > 0 ? 100 * part / whole : 0; }
  // parseSize reads sizes as the CLI does: 512, 64K, 10M, 1.5G, 2T (powers of 1024).
  function parseSize(s) {
    const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgtp]?)(?:i?b)?\s*$/i.exec(s || '');
    if (!m) throw new Error('size ' + JSON.stringify(s) + ': want a number with K, M, G or T, e.g. 10G');
    const exp = ' kmgtp'.indexOf((m[2] || ' ').toLowerCase());
    return Math.round(parseFloat(m[1]) * Math.pow(1024, exp));
  }
  const enc = encodeURIComponent;

  // ---- DOM ----
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const k of kids.flat()) {
      if (k === undefined || k === null) continue;
      e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return e;
  }
  const $ = (sel) => document.querySelector(sel);
  function svg(tag, attrs) {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }
  function notice(text, kind) {
    const d = el('div', { class: kind || '' }, text);
    document.body.dataset.lastNotice = text; // stays after the notice fades
    $('#notice').append(d);
    setTimeout(() => d.remove(), 8000);
  }
  function badge(level) { return el('span', { class: 'badge ' + level }, level); }
  function progress(done, total, label) {
    const p = total > 0 ? Math.min(100, 100 * done / total) : 100;
    const fill = el('span');
    fill.style.width = p.toFixed(1) + '%'; // through the CSSOM: the page allows no inline style
    return el('span', {},
      el('span', { class: 'progress', role: 'progressbar', 'aria-valuenow': p.toFixed(1), 'aria-valuemin': 0, 'aria-valuemax': 100 }, fill),
      el('small', {}, label || p.toFixed(1) + '%'));
  }

  // ---- API ----
  async function api(method, path, body) {
    const opts = { method, credentials: 'same-origin', headers: {} };
    if (state.csrf) opts.headers['X-Gatewayd-CSRF'] = state.csrf;
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(path, opts);
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!r.ok) {
      const err = new Error((data && data.error) || (r.status + ' ' + r.statusText));
      err.status = r.status;
      if (r.status === 401 && !path.startsWith('/console/')) showLogin('Your session ended: log in again.');
      throw err;
    }
    return data;
  }

  // ---- panels: lists of things, with their actions ----
  // A panel lists what its source answers. A source that is not there (404)
  // shows the panel's `absent` text: the gateway does not have that part.
  const PANELS = [
    {
      id: 'volumes', title: 'Volumes', source: '/v1/volumes', key: (v) => v.name, empty: 'No volumes yet.',
      columns: [
        ['Name', (v) => v.name],
        ['Kind', (v) => v.kind],
        ['Size', (v) => bytes(v.size)],
        ['Not uploaded', (v) => bytes(v.stats.dirty_bytes) + (v.stats.pending_chunks ? ' (' + v.stats.pending_chunks + ' chunks)' : '')],
        ['Last upload', (v) => ago(v.stats.last_upload)],
        ['Recovery point', (v) => v.kind === 'cached' ? ago(v.stats.last_recovery_point) : '—'],
        ['Restore', (v) => {
          const h = v.stats.hydration;
          if (!h) return v.from_snapshot ? 'from ' + v.from_snapshot : '';
          return progress(h.done_chunks, h.total_chunks, h.complete ? 'complete' : h.done_chunks + ' of ' + h.total_chunks + ' chunks');
        }],
      ],
      actions: [
        {
          name: 'snapshot', label: 'Snapshot now',
          run: (v) => api('POST', '/v1/volumes/' + enc(v.name) + '/snapshots', { description: 'taken from the console' }),
          done: (v, si) => 'snapshot ' + si.id + ' of ' + v.name + ' taken',
        },
      ],
      form: {
        label: 'Create volume',
        fields: [
          { name: 'name', label: 'Name', placeholder: 'vol1' },
          { name: 'size', label: 'Size', placeholder: '10G' },
          { name: 'kind', label: 'Kind', options: ['cached', 'stored'] },
        ],
        submit: (f) => api('POST', '/v1/volumes', { name: f.name, size: parseSize(f.size), kind: f.kind }),
        done: (f, v) => 'created ' + v.kind + ' volume ' + v.name,
      },
    },
    {
      id: 'snapshots', title: 'Snapshots', source: '/v1/snapshots', key: (s) => s.id, empty: 'No snapshots yet.',
      sort: (a, b) => Date.parse(b.created) - Date.parse(a.created),
      columns: [
        ['ID', (s) => el('code', {}, s.id)],
        ['Volume', (s) => s.volume_name],
        ['Taken', (s) => when(s.created)],
        ['Size', (s) => bytes(s.size)],
        ['Uploaded', (s) => bytes(s.uploaded_bytes)],
        ['By', (s) => s.schedule || 'hand'],
        ['Description', (s) => s.description || ''],
      ],
    },
    {
      id: 'shares', title: 'File shares', source: '/v1/shares', key: (s) => s.name, empty: 'No file shares yet.',
      columns: [
        ['Name', (s) => s.name],
        ['Objects under', (s) => el('code', {}, s.prefix)],
        ['Export', (s) => s.mount ? s.mount.server + ':' + s.mount.export : 'NFS off'],
        ['Files not uploaded', (s) => { const st = latest(); return st && st.stats.shares_pending ? String(st.stats.shares_pending[s.name] || 0) : ''; }],
        ['Access', (s) => (s.read_only ? 'read-only' : 'read-write') + (s.clients && s.clients.length ? ', ' + s.clients.join(' ') : '')],
      ],
      actions: [
        {
          name: 'refresh', label: 'Refresh',
          run: (s) => api('POST', '/v1/shares/' + enc(s.name) + '/refresh', { recursive: true }),
          done: (s) => 'share ' + s.name + ' refreshed: changes made directly in S3 show now',
        },
      ],
    },
    {
      id: 'tapes', title: 'Tapes', source: '/v1/tapes', key: (t) => t.barcode, empty: 'No tapes yet.',
      absent: 'No tape library on this gateway.',
      columns: [
        ['Barcode', (t) => t.barcode],
        ['Size', (t) => bytes(t.capacity)],
        ['Used', (t) => bytes(t.used)],
        ['State', (t) => t.state + (t.retrieval ? ' (' + t.retrieval.readable + '/' + t.retrieval.objects + ' objects readable)' : '') +
          (t.worm ? ', WORM' : '') + (t.pool ? ', pool ' + t.pool : '')],
        ['Where', (t) => t.location || ''],
      ],
      form: {
        label: 'Create tapes',
        fields: [
          { name: 'count', label: 'How many', placeholder: '10' },
          { name: 'size', label: 'Size each', placeholder: '100G' },
          { name: 'barcode_prefix', label: 'Barcode prefix', placeholder: 'GW' },
        ],
        submit: (f) => api('POST', '/v1/tapes', { count: parseInt(f.count, 10), size: parseSize(f.size), barcode_prefix: f.barcode_prefix }),
        done: (f) => 'created ' + f.count + ' tapes',
      },
    },
  ];

  // ---- charts: series drawn from the samples ----
  // A sample is { t (ms), stats (/v1/stats), volumes (/v1/volumes) }; a
  // series' value may use the sample before it (rates).
  const CHARTS = [
    {
      id: 'cache', title: 'Cache', format: (v) => v.toFixed(1) + '%', max: 100,
      series: [
        ['used', (s) => pct(s.stats.cache.used, s.stats.cache.capacity)],
        ['dirty', (s) => pct(s.stats.cache.dirty, s.stats.cache.capacity)],
        ['hit', (s) => s.stats.cache.hit_percent],
      ],
    },
    {
      id: 'buffer', title: 'Upload buffer used', format: (v) => v.toFixed(1) + '%', max: 100,
      series: [
        ['volumes', (s) => pct(s.stats.upload_buffer.used, s.stats.upload_buffer.capacity)],
        ['file shares', (s) => pct(s.stats.share_buffer.used, s.stats.share_buffer.capacity)],
      ],
    },
    {
      id: 'transfer', title: 'Transfer to and from S3', format: (v) => bytes(v) + '/s',
      series: [
        ['upload', (s, p) => p ? Math.max(0, s.stats.bytes_uploaded - p.stats.bytes_uploaded) / Math.max((s.t - p.t) / 1000, 0.001) : 0],
        ['download', (s, p) => p ? Math.max(0, s.stats.bytes_downloaded - p.stats.bytes_downloaded) / Math.max((s.t - p.t) / 1000, 0.001) : 0],
      ],
    },
    {
      id: 'recovery', title: 'Time since last recovery point', format: duration,
      series: [
        ['oldest cached volume', (s) => {
          let worst = 0;
          for (const v of s.volumes) {
            if (v.kind !== 'cached') continue;
            const age = since(v.stats.last_recovery_point);
            worst = Math.max(worst, age === null ? (s.t - Date.parse(v.created)) / 1000 : age);
          }
          return worst;
        }],
      ],
    },
  ];

  function latest() { return state.samples[state.samples.length - 1]; }

  function buildCharts() {
    const box = $('#charts');
    box.replaceChildren();
    for (const c of CHARTS) {
      const legend = el('div', { class: 'legend' },
        c.series.map(([name], i) => el('span', { 'data-series': name }, el('i', { class: 's' + i }), name + ' ', el('b', {}, ''))));
      const s = svg('svg', { viewBox: '0 0 300 120', preserveAspectRatio: 'none', 'aria-label': c.title });
      box.append(el('section', { class: 'card chart', id: 'chart-' + c.id }, el('h2', {}, c.title), s, legend));
    }
  }

  function drawCharts() {
    const samples = state.samples;
    for (const c of CHARTS) {
      const card = $('#chart-' + c.id);
      const s = card.querySelector('svg');
      const values = c.series.map(([, f]) => samples.map((smp, i) => {
        const v = f(smp, samples[i - 1]);
        return isFinite(v) ? v : 0;
      }));
      let top = c.max || 0;
      if (!c.max) {
        for (const vs of values) for (const v of vs) top = Math.max(top, v);
        top = niceCeil(top);
      }
      s.replaceChildren();
      const W = 300, H = 120, left = 0;
      for (let g = 0; g <= 4; g++) {
        const y = H - 12 - g * (H - 24) / 4;
        s.append(svg('line', { class: 'grid', x1: left, x2: W, y1: y, y2: y }));
      }
      const lbl = svg('text', { class: 'axis', x: 2, y: 10 });
      lbl.textContent = c.format(top);
      s.append(lbl);
      values.forEach((vs, i) => {
        const n = vs.length;
        const pts = vs.map((v, j) => {
          const x = n > 1 ? left + (W - left) * (KEEP - n + j) / (KEEP - 1) : W;
          const y = H - 12 - (top > 0 ? Math.min(v, top) / top : 0) * (H - 24);
          return x.toFixed(1) + ',' + y.toFixed(1);
        });
        s.append(svg('polyline', { class: 's' + i, points: pts.join(' '), 'data-series': c.series[i][0] }));
        const cur = card.querySelector('.legend [data-series="' + c.series[i][0] + '"] b');
        cur.textContent = n ? c.format(vs[n - 1]) : '';
      });
    }
  }

  function niceCeil(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  // ---- panels ----
  function buildPanels() {
    const box = $('#panels');
    box.replaceChildren();
    for (const p of PANELS) {
      const head = el('tr', {}, p.columns.map(([h]) => el('th', {}, h)), p.actions ? el('th', {}, '') : null);
      const card = el('section', { class: 'card panel', id: 'panel-' + p.id },
        el('h2', {}, p.title),
        el('table', {}, el('thead', {}, head), el('tbody', {}, el('tr', {}, el('td', { class: 'empty', colspan: p.columns.length + 1 }, 'loading…')))));
      if (p.form) card.append(buildForm(p));
      box.append(card);
    }
    box.append(buildBandwidth());
  }

  function buildForm(p) {
    const f = p.form;
    const form = el('form', { class: 'inline', 'data-form': p.id },
      f.fields.map((fl) => el('label', {}, fl.label,
        fl.options
          ? el('select', { name: fl.name }, fl.options.map((o) => el('option', { value: o }, o)))
          : el('input', { name: fl.name, placeholder: fl.placeholder || '', required: true }))),
      el('button', { type: 'submit' }, f.label));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const vals = {};
      for (const fl of f.fields) vals[fl.name] = form.elements[fl.name].value.trim();
      const btn = form.querySelector('button');
      btn.disabled = true;
      try {
        const out = await f.submit(vals);
        notice(f.done(vals, out));
        form.reset();
        await poll();
      } catch (e) {
        notice(f.label + ': ' + e.message, 'error');
      } finally {
        btn.disabled = false;
      }
    });
    return form;
  }

  async function renderPanel(p) {
    const card = $('#panel-' + p.id);
    const body = card.querySelector('tbody');
    const cols = p.columns.length + (p.actions ? 1 : 0);
    let list;
    try {
      list = await api('GET', p.source);
    } catch (e) {
      const absent = e.status === 404 || e.status === 405;
      body.replaceChildren(el('tr', {}, el('td', { class: 'empty', colspan: cols }, absent && p.absent ? p.absent : 'cannot list: ' + e.message)));
      card.dataset.state = absent ? 'absent' : 'error';
      const form = card.querySelector('form');
      if (form) form.hidden = absent;
      return;
    }
    card.dataset.state = 'ok';
    const form = card.querySelector('form');
    if (form) form.hidden = false;
    list = list || [];
    if (p.sort) list.sort(p.sort);
    if (!list.length) {
      body.replaceChildren(el('tr', {}, el('td', { class: 'empty', colspan: cols }, p.empty)));
      return;
    }
    // Rows are kept and updated in place, keyed by item: a row replaced on
    // every poll would swallow a click that lands between two polls.
    const old = new Map([...body.querySelectorAll('tr[data-key]')].map((r) => [r.dataset.key, r]));
    card.items = new Map();
    const rows = list.map((item) => {
      const key = p.key(item);
      card.items.set(key, item);
      const cells = p.columns.map(([, f]) => f(item));
      let tr = old.get(key);
      if (!tr) {
        tr = el('tr', { 'data-key': key }, cells.map((c) => el('td', {}, c)),
          p.actions ? el('td', {}, p.actions.map((a) => el('button', {
            type: 'button', 'data-action': a.name,
            onclick: async (ev) => {
              const current = card.items.get(key);
              ev.target.disabled = true;
              try {
                const out = await a.run(current);
                notice(a.done(current, out));
                await poll();
              } catch (e) {
                notice(a.label + ': ' + e.message, 'error');
              } finally {
                ev.target.disabled = false;
              }
            },
          }, a.label))) : null);
        return tr;
      }
      cells.forEach((c, i) => {
        const td = tr.children[i];
        const text = c instanceof Node ? c.textContent : String(c ?? '');
        if (td.textContent !== text) td.replaceChildren(c instanceof Node ? c : text);
      });
      return tr;
    });
    if (rows.length !== body.children.length || rows.some((tr, i) => body.children[i] !== tr)) body.replaceChildren(...rows);
  }

  // ---- bandwidth: base limits and the schedule ----
  function buildBandwidth() {
    const form = el('form', { class: 'inline', 'data-form': 'bandwidth' },
      el('label', {}, 'Upload limit', el('input', { name: 'upload', placeholder: '0 = unlimited, e.g. 50M' })),
      el('label', {}, 'Download limit', el('input', { name: 'download', placeholder: '0 = unlimited' })),
      el('button', { type: 'submit' }, 'Set limits'));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        const cur = await api('GET', '/v1/bandwidth');
        const up = form.elements.upload.value.trim(), down = form.elements.download.value.trim();
        const out = await api('PUT', '/v1/bandwidth', {
          upload_bytes_per_sec: up === '' ? cur.upload_bytes_per_sec : parseSize(up),
          download_bytes_per_sec: down === '' ? cur.download_bytes_per_sec : parseSize(down),
        });
        notice('bandwidth: upload ' + rate(out.upload_bytes_per_sec) + ', download ' + rate(out.download_bytes_per_sec));
        form.reset();
        await renderBandwidth();
      } catch (e) {
        notice('bandwidth: ' + e.message, 'error');
      }
    });
    const win = el('form', { class: 'inline', 'data-form': 'window' },
      el('label', {}, 'Days', el('input', { name: 'days', placeholder: 'mon-fri, sat,sun or daily', required: true })),
      el('label', {}, 'From', el('input', { name: 'start', placeholder: '08:00', required: true })),
      el('label', {}, 'To', el('input', { name: 'end', placeholder: '18:00', required: true })),
      el('label', {}, 'Upload', el('input', { name: 'upload', placeholder: '10M (0 = unlimited)' })),
      el('label', {}, 'Download', el('input', { name: 'download', placeholder: '0 = unlimited' })),
      el('button', { type: 'submit' }, 'Add window'));
    win.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        const v = (n) => win.elements[n].value.trim();
        const w = { days: parseDays(v('days')), start: v('start'), end: v('end'),
          upload_bytes_per_sec: v('upload') ? parseSize(v('upload')) : 0, download_bytes_per_sec: v('download') ? parseSize(v('download')) : 0 };
        const sched = await api('GET', '/v1/bandwidth/schedule');
        await api('PUT', '/v1/bandwidth/schedule', { windows: sched.windows.concat([w]) });
        notice('bandwidth schedule: window ' + (sched.windows.length + 1) + ' added');
        win.reset();
        await renderBandwidth();
      } catch (e) {
        notice('bandwidth schedule: ' + e.message, 'error');
      }
    });
    return el('section', { class: 'card', id: 'panel-bandwidth' },
      el('h2', {}, 'Bandwidth to S3'),
      el('dl', { class: 'facts', id: 'bandwidth-facts' }),
      form,
      el('h3', {}, 'Schedule (gateway local time; first matching window wins)'),
      el('table', { id: 'bandwidth-schedule' },
        el('thead', {}, el('tr', {}, ['#', 'Days', 'From', 'To', 'Upload', 'Download', ''].map((h) => el('th', {}, h)))),
        el('tbody')),
      win);
  }

  // parseDays reads days as the CLI does: daily, mon-fri, sat,sun, wed.
  const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
  function parseDays(s) {
    s = s.toLowerCase().replace(/\s+/g, '');
    if (s === 'daily' || s === '') return [];
    const out = [];
    for (const part of s.split(',')) {
      const [a, b] = part.split('-');
      const i = DAYS.indexOf(a), j = b === undefined ? i : DAYS.indexOf(b);
      if (i < 0 || j < 0) throw new Error('days ' + JSON.stringify(part) + ': want mon..sun, a range like mon-fri, or daily');
      for (let k = i; ; k = (k + 1) % 7) { out.push(DAYS[k]); if (k === j) break; }
    }
    return out;
  }

  async function removeWindow(index) {
    try {
      const sched = await api('GET', '/v1/bandwidth/schedule');
      sched.windows.splice(index, 1);
      await api('PUT', '/v1/bandwidth/schedule', { windows: sched.windows });
      notice('bandwidth schedule: window ' + (index + 1) + ' removed');
      await renderBandwidth();
    } catch (e) {
      notice('bandwidth schedule: ' + e.message, 'error');
    }
  }

  async function renderBandwidth() {
    const [bw, sched] = await Promise.all([api('GET', '/v1/bandwidth'), api('GET', '/v1/bandwidth/schedule')]);
    facts($('#bandwidth-facts'), [
      ['Upload now', rate(bw.effective.upload_bytes_per_sec) + (bw.window ? ' (schedule window ' + bw.window + ')' : '')],
      ['Download now', rate(bw.effective.download_bytes_per_sec)],
      ['Base limits', 'upload ' + rate(bw.upload_bytes_per_sec) + ', download ' + rate(bw.download_bytes_per_sec)],
    ]);
    const body = $('#bandwidth-schedule tbody');
    if (!sched.windows.length) {
      body.replaceChildren(el('tr', {}, el('td', { class: 'empty', colspan: 7 }, 'No schedule: the base limits apply at all times.')));
      return;
    }
    body.replaceChildren(...sched.windows.map((w, i) => el('tr', { 'data-key': String(i + 1), class: bw.window === i + 1 ? 'current' : '' },
      el('td', {}, String(i + 1) + (bw.window === i + 1 ? ' (now)' : '')), el('td', {}, (w.days || []).join(',') || 'daily'),
      el('td', {}, w.start), el('td', {}, w.end), el('td', {}, rate(w.upload_bytes_per_sec)), el('td', {}, rate(w.download_bytes_per_sec)),
      el('td', {}, el('button', { type: 'button', 'data-action': 'remove', onclick: () => removeWindow(i) }, 'Remove')))));
  }

  function facts(dl, rows) {
    dl.replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  }

  // ---- overview ----
  function renderOverview(st) {
    $('#gateway-id').textContent = st.gateway_id + '  ·  ' + st.version;
    const store = (st.health || []).find((h) => h.subsystem === 'objstore');
    facts($('#gateway-facts'), [
      ['Gateway', st.gateway_id],
      ['Version', st.version],
      ['Object store', st.store],
      ['S3 endpoint', store ? el('span', { id: 's3-state' }, badge(store.level), ' ', store.level === 'ok' ? 'reachable' : (store.message || 'unreachable')) : 'not checked yet'],
      ['Overall health', badge(st.overall)],
      ['Up', duration(since(st.started_at))],
    ]);
    $('#health tbody').replaceChildren(...(st.health || []).map((h) => el('tr', { 'data-key': h.subsystem },
      el('td', {}, h.subsystem), el('td', {}, badge(h.level)), el('td', {}, ago(h.since)), el('td', {}, h.message || ''))));
    $('#frontends tbody').replaceChildren(...(st.frontends || []).map((f) => el('tr', { 'data-key': f.name },
      el('td', {}, f.name), el('td', {}, el('code', {}, f.listen || '')), el('td', {}, f.state))));
  }

  // ---- the loop ----
  let polling = null;
  function poll() {
    if (!polling) polling = pollOnce().finally(() => { polling = null; });
    return polling;
  }

  async function pollOnce() {
    try {
      const [st, stats, volumes] = await Promise.all([api('GET', '/v1/status'), api('GET', '/v1/stats'), api('GET', '/v1/volumes')]);
      state.samples.push({ t: Date.parse(stats.time), stats, volumes });
      if (state.samples.length > KEEP) state.samples.shift();
      renderOverview(st);
      drawCharts();
      await Promise.all([...PANELS.map(renderPanel), renderBandwidth()]);
      $('#updated').textContent = 'updated ' + new Date().toLocaleTimeString();
      document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
    } catch (e) {
      if (e.status !== 401) $('#updated').textContent = 'cannot reach gatewayd: ' + e.message;
    }
  }

  function start() {
    $('#login').hidden = true;
    $('#app').hidden = false;
    $('#logout').hidden = false;
    if (!state.started) {
      buildCharts();
      buildPanels();
      state.started = true;
    }
    poll();
    clearInterval(state.timer);
    state.timer = setInterval(poll, POLL_MS);
  }

  function showLogin(msg) {
    clearInterval(state.timer);
    state.csrf = '';
    $('#app').hidden = true;
    $('#logout').hidden = true;
    $('#login').hidden = false;
    $('#login-error').textContent = msg || '';
    $('#token').focus();
  }

  $('#login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const s = await api('POST', '/console/login', { token: $('#token').value.trim() });
      state.csrf = s.csrf;
      $('#token').value = '';
      $('#login-error').textContent = '';
      start();
    } catch (e) {
      $('#login-error').textContent = 'Login failed: ' + e.message;
    }
  });

  $('#logout').addEventListener('click', async () => {
    try { await api('POST', '/console/logout'); } catch (e) { /* logged out either way */ }
    showLogin('Logged out.');
  });

  api('GET', '/console/session').then((s) => { state.csrf = s.csrf; start(); }, () => showLogin(''));
})();
