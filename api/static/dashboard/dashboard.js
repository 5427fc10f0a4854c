/* usage-ledger admin dashboard.
 *
 * Reads the public JSON API with the session cookie (no private endpoints) and renders it:
 * charts with Chart.js (vendored under vendor/chart.js), everything else as plain DOM built
 * with textContent (never innerHTML with data). Each panel loads on its own and shows its
 * own loading, empty and error states; the header shows the ledger position the figures
 * reflect (the lowest X-Ledger-Position among the reads of the last refresh).
 */
(function () {
  'use strict';

  // ---------------------------------------------------------------------------------------
  // small helpers
  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'class') el.className = value;
      else if (key === 'text') el.textContent = value;
      else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  const intFormat = new Intl.NumberFormat('en-US');
  const fmtInt = (v) => intFormat.format(Math.round(Number(v) || 0));
  function fmtUsd(v) {
    const n = Number(v) || 0;
    const digits = n !== 0 && Math.abs(n) < 1 ? 4 : 2;
    return '$' + n.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: digits });
  }
  const fmtCredits = (v) => (Number(v) || 0).toLocaleString('en-US', { maximumFractionDigits: 1 });
  const fmtPct = (v) => (Number(v) || 0).toLocaleString('en-US', { maximumFractionDigits: 1 }) + ' %';
  function fmtTime(iso) {
    if (!iso) return '—';
    return iso.replace('T', ' ').replace(/:\d\d(\.\d+)?Z$/, ' UTC');
  }

  function fmtShort(iso) {
    if (!iso) return '—';
    return h('time', { datetime: iso, title: fmtTime(iso), class: 'nowrap' }, iso.slice(5, 10) + ' ' + iso.slice(11, 16));
  }

  // identifiers (user:ada@example.com, key:key_…) may wrap only after ':' or '@' and before '.'
  const breakable = (text) => String(text).split(/(?<=[:@])|(?=\.)/).flatMap((part, i) => (i ? [h('wbr', {}), part] : [part]));

  // dates are UTC calendar days, like the API's
  const ISO_DAY = /^\d{4}-\d{2}-\d{2}$/;
  const isIsoDay = (d) => ISO_DAY.test(d || '') && new Date(d + 'T00:00:00Z').toISOString().slice(0, 10) === d;
  const todayUtc = () => new Date().toISOString().slice(0, 10);
  function addDays(day, n) {
    const d = new Date(day + 'T00:00:00Z');
    d.setUTCDate(d.getUTCDate() + n);
    return d.toISOString().slice(0, 10);
  }
  const daysBetween = (a, b) => Math.round((Date.parse(b + 'T00:00:00Z') - Date.parse(a + 'T00:00:00Z')) / 86400000);

  // ---------------------------------------------------------------------------------------
  // the API
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function query(params) {
    const pairs = Object.entries(params || {}).filter(([, v]) => v !== undefined && v !== null && v !== '');
    return pairs.length ? '?' + new URLSearchParams(pairs).toString() : '';
  }

  async function api(path, options) {
    const { method = 'GET', body, params } = options || {};
    const headers = { Accept: 'application/json' };
    if (method !== 'GET') headers['X-Requested-With'] = 'usage-ledger-dashboard'; // the CSRF rule
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(path + query(params), {
        method, headers, credentials: 'same-origin', cache: 'no-store',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, 'NETWORK_ERROR', 'The service cannot be reached (' + err.message + ')');
    }
    const header = response.headers.get('X-Ledger-Position');
    const position = header === null ? null : Number(header);
    let data = null;
    if (response.status !== 204) {
      const text = await response.text();
      try { data = text ? JSON.parse(text) : null; } catch (err) { data = null; }
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      const failure = new ApiError(response.status, error.code || 'HTTP_' + response.status, error.message || response.statusText);
      if (response.status === 401 && path !== '/api/v1/auth/login') sessionEnded();
      throw failure;
    }
    return { data, position };
  }

  function describe(err) {
    if (err instanceof ApiError) return err.status ? `${err.message} (${err.status} ${err.code})` : err.message;
    return String(err && err.message ? err.message : err);
  }

  // ---------------------------------------------------------------------------------------
  // state
  const state = {
    me: null,
    config: null,
    metric: 'events',
    generation: 0,
    positions: [],
    usageRows: null, // /api/v1/usage aggregates of the current range
    creditsDaily: null, // date -> credits, from /api/usage
    creditPool: null, // from /api/usage, shown in the licence panel
    range: null,
    timer: null,
    refreshing: false,
    ended: false,
  };
  const can = (permission) => !!(state.me && state.me.permissions.includes(permission));
  const BILLING = 'permission.billing.manage';
  const SCOPES = ['read:usage', 'read:policies', 'write:logs', 'read:audit', 'read:ledger', 'usage:platform_wide'];
  const DEFAULT_SCOPES = ['read:policies', 'write:logs'];
  const COLORS = ['#2f5fd0', '#1f8a4c', '#b86e00', '#8e44ad', '#c62828', '#00838f', '#6d4c41', '#5c6bc0', '#7cb342', '#d81b60'];

  function note(position) {
    if (position !== null && position !== undefined && !Number.isNaN(position)) state.positions.push(position);
  }

  // ---------------------------------------------------------------------------------------
  // panel states
  function stateBox(kind, text, retry) {
    const box = h('div', { class: 'state ' + kind, role: kind === 'error' ? 'alert' : null }, text);
    if (retry) box.append(' ', h('button', { type: 'button', class: 'link', onclick: retry }, 'Retry'));
    return box;
  }

  function panelBody(id) { return $('#' + id + ' .panel-body'); }

  function busy(id, on) { $('#' + id).setAttribute('aria-busy', on ? 'true' : 'false'); }

  function chartOverlay(canvasId, kind, text) {
    const box = document.getElementById(canvasId).parentElement;
    let overlay = $('.overlay', box);
    if (!kind) {
      if (overlay) overlay.remove();
      return;
    }
    if (!overlay) {
      overlay = h('div', { class: 'overlay' });
      box.append(overlay);
    }
    overlay.replaceChildren(stateBox(kind, text, kind === 'error' ? () => refreshAll() : null));
  }

  function setBanner(id, kind, content) {
    let banner = document.getElementById('banner-' + id);
    if (!content) {
      if (banner) banner.remove();
      return;
    }
    if (!banner) {
      banner = h('div', { id: 'banner-' + id, class: 'banner ' + kind, role: kind === 'error' ? 'alert' : 'status' });
      $('#banners').append(banner);
    }
    banner.className = 'banner ' + kind;
    banner.replaceChildren(...[].concat(content));
  }

  // ---------------------------------------------------------------------------------------
  // charts
  function drawChart(canvasId, config) {
    chartOverlay(canvasId, null);
    const canvas = document.getElementById(canvasId);
    const existing = Chart.getChart(canvas);
    if (existing && existing.config.type === config.type) {
      existing.data = config.data;
      existing.options = config.options;
      existing.update();
      return existing;
    }
    if (existing) existing.destroy();
    return new Chart(canvas, config);
  }

  // a message (empty, loading, info, error) in place of the chart
  function chartMessage(canvasId, kind, text) {
    const existing = Chart.getChart(document.getElementById(canvasId));
    if (existing) existing.destroy();
    chartOverlay(canvasId, kind, text);
  }

  // ---------------------------------------------------------------------------------------
  // range controls
  function readRange() {
    const start = $('#start-date').value;
    const end = $('#end-date').value;
    const granularity = $('#granularity').value;
    if (!start || !end) return { error: 'Choose both dates.' };
    if (!isIsoDay(start) || !isIsoDay(end)) return { error: 'Write dates as YYYY-MM-DD, for example ' + todayUtc() + '.' };
    if (start > end) return { error: 'The start date must not be after the end date.' };
    if (granularity === 'hourly' && daysBetween(start, end) > 92) {
      return { error: 'Hourly figures are limited to 93 days; choose daily or a shorter range.' };
    }
    return { start, end, granularity };
  }

  function setRange(start, end, granularity) {
    $('#start-date').value = start;
    $('#end-date').value = end;
    if (granularity) $('#granularity').value = granularity;
  }

  function rememberRange(range) {
    const hash = new URLSearchParams({ from: range.start, to: range.end, granularity: range.granularity }).toString();
    history.replaceState(null, '', '#' + hash);
  }

  function initialRange() {
    const saved = new URLSearchParams(location.hash.slice(1));
    const valid = isIsoDay;
    const end = valid(saved.get('to')) ? saved.get('to') : todayUtc();
    const start = valid(saved.get('from')) ? saved.get('from') : addDays(end, -29);
    const granularity = saved.get('granularity') === 'hourly' ? 'hourly' : 'daily';
    setRange(start, end, granularity);
  }

  // ---------------------------------------------------------------------------------------
  // loading everything
  async function refreshAll() {
    const range = readRange();
    $('#range-error').hidden = !range.error;
    if (range.error) {
      $('#range-error').textContent = range.error;
      return;
    }
    rememberRange(range);
    state.range = range;
    const gen = ++state.generation;
    state.positions = [];
    state.refreshing = true;
    document.body.dataset.refresh = 'loading';
    $('#refresh').disabled = true;
    const jobs = [
      loadUsage(gen, range), loadSummary(gen, range), loadCredits(gen, range), loadModels(gen, range),
      loadTop(gen, range), loadBudgets(gen), loadLicence(gen), loadKeys(gen), loadAudit(gen), loadDocs(gen),
    ];
    const results = await Promise.allSettled(jobs);
    if (gen !== state.generation) return;
    state.refreshing = false;
    $('#refresh').disabled = false;
    const failures = results.map((r) => r.status === 'fulfilled' && r.value).filter((e) => e instanceof ApiError);
    const down = failures.filter((e) => e.status === 0 || e.status === 503 || e.status >= 500 && e.status !== 502);
    if (down.length && down.length === failures.length && down.length >= 3) {
      setBanner('service', 'error', `The service could not answer ${down.length} of the reads: ${describe(down[0])}. The page keeps trying on refresh.`);
    } else {
      setBanner('service', null);
    }
    const label = $('#ledger-position');
    if (state.positions.length) {
      const position = Math.min(...state.positions);
      label.textContent = 'Ledger position ' + fmtInt(position);
      label.dataset.position = String(position);
    } else {
      label.textContent = 'Ledger position —';
      delete label.dataset.position;
    }
    label.title = 'The figures reflect the ledger up to this position (refreshed ' + new Date().toISOString().slice(11, 19) + ' UTC)';
    document.body.dataset.refresh = 'idle';
    document.body.dataset.generation = String(gen);
  }

  // Each loader returns the ApiError it met (or nothing), and renders its own state.
  async function guarded(gen, panelId, work, onError) {
    if (panelId) busy(panelId, true);
    try {
      await work();
      return null;
    } catch (err) {
      if ((gen === undefined || gen === state.generation) && !state.ended) onError(err);
      return err instanceof ApiError ? err : new ApiError(0, 'SCRIPT_ERROR', describe(err));
    } finally {
      if (panelId && (gen === undefined || gen === state.generation)) busy(panelId, false);
    }
  }

  // usage over time ---------------------------------------------------------------------
  function loadUsage(gen, range) {
    $('#panel-usage').dataset.range = '';
    return guarded(gen, 'panel-usage', async () => {
      const { data, position } = await api('/api/v1/usage', {
        params: { granularity: range.granularity, start_date: range.start, end_date: range.end },
      });
      if (gen !== state.generation) return;
      note(position);
      state.usageRows = data.data;
      renderUsageChart();
      $('#panel-usage').dataset.range = `${range.start}..${range.end}/${range.granularity}`;
    }, (err) => {
      state.usageRows = null;
      chartMessage('usage-chart', 'error', 'Usage could not be loaded: ' + describe(err));
    });
  }

  function bucketLabels(range, granularity) {
    const labels = [];
    for (let day = range.start; day <= range.end; day = addDays(day, 1)) {
      if (granularity === 'hourly') {
        for (let hour = 0; hour < 24; hour++) labels.push(`${day} ${String(hour).padStart(2, '0')}:00`);
      } else {
        labels.push(day);
      }
    }
    return labels;
  }

  const bucketOf = (iso, granularity) => (granularity === 'hourly' ? `${iso.slice(0, 10)} ${iso.slice(11, 13)}:00` : iso.slice(0, 10));

  const METRICS = {
    events: { label: 'Events', field: 'event_count', format: fmtInt },
    tokens: { label: 'Tokens', field: 'total_tokens', format: fmtInt },
    cost: { label: 'Cost (USD)', field: 'estimated_cost_usd', format: fmtUsd },
    credits: { label: 'Credits', format: fmtCredits },
  };

  function renderUsageChart() {
    const range = state.range;
    if (!range) return;
    const metric = METRICS[state.metric];
    let labels;
    let values;
    let granularity = range.granularity;
    const noteEl = $('#usage-note');
    noteEl.textContent = '';
    if (state.metric === 'credits') {
      if (!can(BILLING)) {
        chartMessage('usage-chart', 'info', 'Credits need the permission.billing.manage permission.');
        return;
      }
      if (!state.creditsDaily) {
        chartMessage('usage-chart', 'loading', 'Loading credits…');
        return;
      }
      granularity = 'daily';
      if (range.granularity === 'hourly') noteEl.textContent = 'Credits are reported per day.';
      labels = bucketLabels(range, 'daily');
      values = labels.map((day) => state.creditsDaily[day] || 0);
    } else {
      if (!state.usageRows) return;
      const sums = new Map();
      for (const row of state.usageRows) {
        const key = bucketOf(row.time_bucket, granularity);
        sums.set(key, (sums.get(key) || 0) + Number(row[metric.field] || 0));
      }
      labels = bucketLabels(range, granularity);
      values = labels.map((label) => Number((sums.get(label) || 0).toFixed(6)));
    }
    const total = values.reduce((a, b) => a + b, 0);
    if (total === 0) {
      chartMessage('usage-chart', 'empty', 'No usage in this range.');
      return;
    }
    const hourly = granularity === 'hourly';
    drawChart('usage-chart', {
      type: hourly ? 'line' : 'bar',
      data: {
        labels,
        datasets: [{
          label: metric.label,
          data: values,
          backgroundColor: hourly ? 'rgba(47, 95, 208, 0.15)' : '#2f5fd0',
          borderColor: '#2f5fd0',
          borderWidth: hourly ? 1.5 : 0,
          pointRadius: 0,
          fill: hourly,
          tension: 0.2,
        }],
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: 'index', intersect: false },
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { label: (ctx) => `${metric.label}: ${metric.format(ctx.parsed.y)}` } },
        },
        scales: {
          x: { ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: hourly ? 8 : 12 }, grid: { display: false } },
          y: { beginAtZero: true, ticks: { callback: (v) => metric.format(v) } },
        },
      },
    });
    $('#usage-chart').setAttribute('aria-label', `${metric.label} per ${hourly ? 'hour' : 'day'}, ${range.start} to ${range.end}: total ${metric.format(total)}`);
  }

  // totals -------------------------------------------------------------------------------
  function loadSummary(gen, range) {
    return guarded(gen, null, async () => {
      const { data, position } = await api('/api/v1/usage/summary', { params: { start_date: range.start, end_date: range.end } });
      if (gen !== state.generation) return;
      note(position);
      $('#total-events').textContent = fmtInt(data.total_events);
      $('#total-tokens').textContent = fmtInt(data.total_tokens);
      $('#total-cost').textContent = fmtUsd(data.estimated_cost_usd);
      $('#total-cost').dataset.nanos = String(data.estimated_cost_nanos);  // exact, beside the rounded figure
      $('#total-cost').title = data.unpriced_events ? `${fmtInt(data.unpriced_events)} events have no price and count as $0` : '';
      $('#success-rate').textContent = data.total_events ? fmtPct(data.success_rate) : '—';
      $('#totals').dataset.range = `${range.start}..${range.end}`;
    }, (err) => {
      for (const id of ['total-events', 'total-tokens', 'total-cost', 'success-rate']) {
        $('#' + id).textContent = 'error';
        $('#' + id).title = describe(err);
      }
    });
  }

  // credits: totals tile, credits metric, resource chart, licence sync banner -------------
  const SYNC_FAILURES = {
    lm_unreachable: 'The License Manager is unreachable',
    lm_unavailable: 'The License Manager is unavailable (503)',
    license_not_recognized: 'The License Manager does not recognise this licence key',
    lm_error: 'The License Manager answered with an error',
  };

  function loadCredits(gen, range) {
    state.creditsDaily = null;
    if (!can(BILLING)) {
      $('#total-credits').textContent = '—';
      $('#total-credits').title = 'Needs the permission.billing.manage permission';
      chartMessage('resource-chart', 'info', 'Credits need the permission.billing.manage permission.');
      return Promise.resolve(null);
    }
    return guarded(gen, 'panel-resources', async () => {
      const { data, position } = await api('/api/usage', { params: { startDate: range.start, endDate: range.end } });
      if (gen !== state.generation) return;
      note(position);
      const daily = {};
      for (const row of data.dailyTotals) {
        daily[row.date] = (daily[row.date] || 0) + Number(row.totalCredits);
      }
      state.creditsDaily = daily;
      // the answer's own total (summed in nanos, rounded once), not a sum of rounded rows
      $('#total-credits').textContent = fmtCredits(data.totalCredits);
      $('#total-credits').dataset.nanos = String(data.totalCreditsNanos);
      $('#total-credits').title = '';
      if (state.metric === 'credits') renderUsageChart();
      renderResources(data.usageSummary);
      renderSync(data.sync);
      state.creditPool = data.creditPool;
      renderCreditPool();
    }, (err) => {
      $('#total-credits').textContent = 'error';
      $('#total-credits').title = describe(err);
      chartMessage('resource-chart', 'error', 'Credits could not be loaded: ' + describe(err));
      if (state.metric === 'credits') {
        chartMessage('usage-chart', 'error', 'Credits could not be loaded: ' + describe(err));
      }
    });
  }

  const NARROW = window.matchMedia('(max-width: 600px)');

  // a doughnut's legend names each slice with its value and its share of the whole
  function legendWithShares(chart) {
    const labels = Chart.overrides.doughnut.plugins.legend.labels.generateLabels(chart);
    const values = chart.data.datasets[0].data;
    const total = values.reduce((sum, v) => sum + Number(v), 0);
    for (const label of labels) {
      const value = Number(values[label.index]);
      label.text = `${label.text}: ${fmtCredits(value)} (${fmtPct(total ? (100 * value) / total : 0)})`;
    }
    return labels;
  }

  function renderResources(summary) {
    const byType = new Map();
    for (const row of summary) byType.set(row.resourceType, (byType.get(row.resourceType) || 0) + Number(row.totalCredits));
    const entries = [...byType.entries()].filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]);
    if (!entries.length) {
      chartMessage('resource-chart', 'empty', 'No credits used in this range.');
      return;
    }
    drawChart('resource-chart', {
      type: 'doughnut',
      data: {
        labels: entries.map(([k]) => k),
        datasets: [{ data: entries.map(([, v]) => Number(v.toFixed(6))), backgroundColor: COLORS, borderWidth: 1 }],
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        plugins: {
          legend: { position: NARROW.matches ? 'bottom' : 'right', labels: { boxWidth: 12, generateLabels: legendWithShares } },
          tooltip: { callbacks: { label: (ctx) => `${ctx.label}: ${fmtCredits(ctx.parsed)} credits` } },
        },
      },
    });
  }

  function renderSync(sync) {
    if (!sync) return setBanner('sync', null);
    if (sync.lastSyncFailureCode) {
      const what = SYNC_FAILURES[sync.lastSyncFailureCode] || 'The licence sync failed';
      const synced = sync.syncedAt ? 'last synced ' + fmtTime(sync.syncedAt) : 'never synced';
      const stale = sync.stalenessLevel ? ` Licence data is ${sync.stalenessLevel}.` : '';
      setBanner('sync', sync.stalenessLevel === 'critical' ? 'error' : 'warning', [
        h('strong', {}, what),
        ` (${sync.lastSyncFailureCode}, since ${fmtTime(sync.lastSyncFailedAt)}): licence and credit-pool figures were ${synced}.${stale}`,
      ]);
    } else if (sync.stalenessLevel) {
      setBanner('sync', 'warning', [h('strong', {}, 'Licence data is ' + sync.stalenessLevel), ': last synced ' + fmtTime(sync.syncedAt) + '.']);
    } else {
      setBanner('sync', null);
    }
  }

  // cost by model ------------------------------------------------------------------------
  function loadModels(gen, range) {
    return guarded(gen, 'panel-models', async () => {
      const { data, position } = await api('/api/v1/usage/breakdown', { params: { group_by: 'model', start: range.start, end: range.end } });
      if (gen !== state.generation) return;
      note(position);
      const rows = data.breakdown.filter((r) => r.key).sort((a, b) => b.cost_usd - a.cost_usd || b.events - a.events);
      const unpriced = rows.filter((r) => r.unpriced_events > 0);
      $('#models-note').textContent = unpriced.length
        ? 'No price (counted as $0): ' + unpriced.map((r) => `${r.key} (${fmtInt(r.unpriced_events)} events)`).join(', ') + '.'
        : '';
      const priced = rows.filter((r) => Number(r.cost_usd) > 0).slice(0, 10);
      if (!priced.length) {
        chartMessage('model-chart', 'empty', 'No priced model usage in this range.');
        return;
      }
      drawChart('model-chart', {
        type: 'bar',
        data: {
          labels: priced.map((r) => r.key),
          datasets: [{ label: 'Cost (USD)', data: priced.map((r) => Number(r.cost_usd)), backgroundColor: COLORS }],
        },
        options: {
          indexAxis: 'y',
          responsive: true,
          maintainAspectRatio: false,
          animation: false,
          plugins: {
            legend: { display: false },
            tooltip: { callbacks: { label: (ctx) => `${fmtUsd(ctx.parsed.x)} · ${fmtInt(priced[ctx.dataIndex].events)} events` } },
          },
          scales: { x: { beginAtZero: true, ticks: { callback: (v) => fmtUsd(v) } }, y: { grid: { display: false } } },
        },
      });
    }, (err) => {
      $('#models-note').textContent = '';
      chartMessage('model-chart', 'error', 'Cost by model could not be loaded: ' + describe(err));
    });
  }

  // top consumers ------------------------------------------------------------------------
  function loadTop(gen, range) {
    const body = panelBody('panel-top');
    if (!can(BILLING)) {
      body.replaceChildren(stateBox('info', 'Top consumers need the permission.billing.manage permission.'));
      return Promise.resolve(null);
    }
    const days = Math.min(365, Math.max(1, daysBetween(range.start, todayUtc()) + 1));
    return guarded(gen, 'panel-top', async () => {
      const { data, position } = await api('/api/usage/top-consumers', { params: { days, limit: 5 } });
      if (gen !== state.generation) return;
      note(position);
      $('#top-window').textContent = `credits, ${data.startDate} to ${data.endDate}`;
      if (!data.topApps.length && !data.topUsers.length) {
        body.replaceChildren(stateBox('empty', 'No credits used in this window.'));
        return;
      }
      const table = (caption, rows, nameOf) => h('div', {},
        h('h3', {}, caption),
        rows.length ? h('div', { class: 'table-wrap' }, h('table', {},
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col', class: 'num' }, 'Credits'), h('th', { scope: 'col', class: 'num' }, 'Events'))),
          h('tbody', {}, rows.map((r) => h('tr', {}, h('td', {}, nameOf(r)), h('td', { class: 'num' }, fmtCredits(r.totalCredits)), h('td', { class: 'num' }, fmtInt(r.totalEvents))))),
        )) : stateBox('empty', 'None.'));
      body.replaceChildren(h('div', { class: 'two-col' },
        table('Apps', data.topApps, (r) => r.name || r.entityId),
        table('Users and agents', data.topUsers, (r) => h('span', {}, r.displayName || r.actor, ' ', h('span', { class: 'badge' }, r.actorType))),
      ));
    }, (err) => body.replaceChildren(stateBox('error', 'Top consumers could not be loaded: ' + describe(err), () => refreshAll())));
  }

  // budgets ------------------------------------------------------------------------------
  function loadBudgets(gen) {
    const body = panelBody('panel-budgets');
    if (!can(BILLING)) {
      body.replaceChildren(stateBox('info', 'Budgets need the permission.billing.manage permission.'));
      return Promise.resolve(null);
    }
    return guarded(gen, 'panel-budgets', async () => {
      const { data, position } = await api('/api/v1/budgets', { params: { limit: 100 } });
      note(position);
      if (!data.budgets.length) {
        if (gen === state.generation) body.replaceChildren(stateBox('empty', 'No budgets yet. Create them with POST /api/v1/budgets.'));
        return;
      }
      const statuses = await Promise.all(data.budgets.map((b) => (b.enabled
        ? api(`/api/v1/budgets/${encodeURIComponent(b.id)}/status`).then((r) => { note(r.position); return r.data; }, (e) => e)
        : Promise.resolve(null))));
      if (gen !== state.generation) return;
      const order = { exceeded: 0, warning: 1, ok: 2 };
      const items = data.budgets.map((b, i) => ({ budget: b, status: statuses[i] }));
      items.sort((a, b) => rank(a) - rank(b) || a.budget.name.localeCompare(b.budget.name));
      function rank(item) {
        const s = item.status;
        if (s instanceof ApiError) return -1;
        return s ? order[s.status] : 3;
      }
      body.replaceChildren(h('ul', { class: 'budgets' }, items.map(budgetItem)));
    }, (err) => body.replaceChildren(stateBox('error', 'Budgets could not be loaded: ' + describe(err), () => refreshAll())));
  }

  function budgetItem({ budget, status }) {
    const scope = budget.scope === 'organization' ? 'organization' : `${budget.scope} ${budget.scope_id}`;
    const amount = (v) => (budget.unit === 'credits' ? fmtCredits(v) + ' credits' : fmtUsd(v));
    if (status instanceof ApiError) {
      return h('li', { class: 'budget', 'data-budget-id': budget.id },
        h('div', { class: 'budget-head' }, h('span', { class: 'budget-name' }, budget.name)),
        stateBox('error', 'Status could not be loaded: ' + describe(status)));
    }
    if (!status) {
      return h('li', { class: 'budget status-disabled', 'data-budget-id': budget.id },
        h('div', { class: 'budget-head' }, h('span', { class: 'budget-name' }, budget.name), h('span', { class: 'badge' }, 'disabled')),
        h('div', { class: 'budget-figures' }, `${scope} · ${budget.period} · limit ${amount(budget.limit_usd ?? budget.limit_credits)}`));
    }
    const pct = Number(status.percentage) || 0;
    const limit = Number(status.limit) || 0;
    const held = Number(status.held_usd ?? status.held_credits) || 0;
    const heldPct = limit > 0 ? Math.max(0, Math.min(100 - Math.min(100, pct), (held * 100) / limit)) : 0;
    const label = { ok: 'OK', warning: 'Warning', exceeded: 'Over budget' }[status.status] || status.status;
    return h('li', { class: 'budget status-' + status.status, 'data-budget-id': budget.id, 'data-status': status.status },
      h('div', { class: 'budget-head' },
        h('span', { class: 'budget-name' }, budget.name),
        h('span', { class: 'badge ' + status.status }, label)),
      h('div', {
        class: 'bar', role: 'progressbar', 'aria-label': `${budget.name}: ${fmtPct(pct)} of the limit used`,
        'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.min(100, Math.round(pct)),
      }, h('div', { class: 'bar-fill', style: null, 'data-width': Math.min(100, pct) }),
        held > 0 ? h('div', { class: 'bar-fill bar-held', title: `${amount(held)} held`, 'data-width': heldPct }) : null),
      h('div', { class: 'budget-figures' },
        `${amount(status.used)} of ${amount(status.limit)} (${fmtPct(pct)})${held > 0 ? ` · ${amount(held)} held` : ''} · ${scope} · ${budget.period}, until ${status.period_end.slice(0, 10)}`));
  }

  // Inline style attributes are not allowed by the page's CSP; widths are set through the CSSOM.
  const widthObserver = new MutationObserver(() => {
    for (const fill of $$('.bar-fill[data-width]')) {
      fill.style.width = fill.dataset.width + '%';
      fill.removeAttribute('data-width');
    }
  });

  // licence and nodes --------------------------------------------------------------------
  function loadLicence(gen) {
    const body = panelBody('panel-licence');
    return guarded(gen, 'panel-licence', async () => {
      const parts = [];
      const showNodes = Boolean(state.config && state.config.show_node_usage);
      let licence = null;
      try {
        const { data, position } = await api('/api/v1/license/status');
        note(position);
        licence = data;
      } catch (err) {
        if (!(err instanceof ApiError && err.code === 'LICENSE_NOT_FOUND')) throw err;
      }
      if (licence) {
        parts.push(h('dl', { class: 'facts', id: 'licence-facts' },
          h('dt', {}, 'Tier'), h('dd', {}, licence.tier),
          h('dt', {}, 'Status'), h('dd', {}, h('span', { class: 'badge ' + licence.status }, licence.status.replace('_', ' '))),
          ...(showNodes
            ? [h('dt', {}, 'Nodes'), h('dd', {}, `${fmtInt(licence.nodes_used)} of ${fmtInt(licence.nodes_total)} active (${fmtPct(licence.usage_percentage)})`)]
            : [h('dt', {}, 'Nodes licensed'), h('dd', {}, fmtInt(licence.nodes_total))]),
          h('dt', {}, 'Expires'), h('dd', {}, fmtTime(licence.expires_at)),
          h('dt', { 'data-pool': '' }, 'Credit pool'), h('dd', { id: 'credit-pool' }, '—'),
        ));
      } else {
        parts.push(stateBox('empty', 'This organization has no licence.'));
      }
      if (showNodes) {
        const [status, nodes] = await Promise.all([api('/api/v1/nodes/status'), api('/api/v1/nodes')]);
        note(status.position);
        note(nodes.position);
        const s = status.data;
        parts.push(h('h3', { class: 'small' }, 'Active nodes ', h('span', { class: 'badge ' + s.status }, s.status),
          ` ${fmtInt(s.total)} of ${fmtInt(s.max_allowed)} (${fmtInt(s.agents)} agents, ${fmtInt(s.orchestrators)} orchestrators)`));
        parts.push(nodes.data.nodes.length
          ? h('div', { class: 'table-wrap' }, h('table', { id: 'nodes-table', class: 'stack-narrow' },
            h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Instance'), h('th', { scope: 'col' }, 'Type'),
              h('th', { scope: 'col', class: 'hide-narrow' }, 'Host'), h('th', { scope: 'col' }, 'Last seen'))),
            h('tbody', {}, nodes.data.nodes.slice(0, MAX_NODES).map((n) => h('tr', {},
              h('td', {}, n.instance_id), h('td', {}, n.instance_type),
              h('td', { class: 'hide-narrow' }, n.hostname ? `${n.hostname}${n.port ? ':' + n.port : ''}` : '—'),
              h('td', {}, fmtShort(n.last_seen))))),
            nodes.data.nodes.length > MAX_NODES
              ? h('tfoot', {}, h('tr', {}, h('td', { colspan: 4, class: 'muted' }, `and ${nodes.data.nodes.length - MAX_NODES} more`)))
              : null))
          : stateBox('empty', 'No node has sent a heartbeat in the last few minutes.'));
      } else {
        parts.push(stateBox('info', 'Node metrics are not available in SaaS mode (they are shown in In-VPC deployments).'));
      }
      if (gen !== state.generation) return;
      body.replaceChildren(...parts);
      renderCreditPool();
    }, (err) => body.replaceChildren(stateBox('error', 'Licence and nodes could not be loaded: ' + describe(err), () => refreshAll())));
  }

  const MAX_NODES = 6;

  function renderCreditPool() {
    const cell = $('#credit-pool');
    const pool = state.creditPool;
    if (!cell || !pool) return;
    cell.textContent = `${fmtCredits(pool.used)} of ${fmtCredits(pool.included)} credits used this month (${fmtCredits(pool.remaining)} left)`;
  }

  // API keys -----------------------------------------------------------------------------
  function keyStatus(key) {
    if (key.revoked_at) return 'revoked';
    if (key.expires_at && Date.parse(key.expires_at) <= Date.now()) return 'expired';
    return 'active';
  }

  function loadKeys(gen, minPosition) {
    const list = $('#keys-list');
    return guarded(gen, 'panel-keys', async () => {
      const { data, position } = await api('/api/v1/keys', { params: { min_position: minPosition } });
      if (gen !== undefined && gen !== state.generation) return;
      note(position);
      if (!data.keys.length) {
        list.replaceChildren(stateBox('empty', 'No API keys yet.'));
        return;
      }
      list.replaceChildren(h('div', { class: 'table-wrap' }, h('table', { id: 'keys-table', class: 'stack-narrow' },
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Key'), h('th', { scope: 'col', class: 'hide-narrow' }, 'Scopes'),
          h('th', { scope: 'col', class: 'hide-narrow' }, 'Last used'), h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col' }, h('span', { class: 'muted' }, 'Action')))),
        h('tbody', {}, data.keys.map((key) => {
          const status = keyStatus(key);
          return h('tr', { 'data-key-id': key.id, class: status === 'active' ? null : 'is-revoked' },
            h('td', {}, key.name),
            h('td', {}, h('code', {}, key.key_prefix + '…')),
            h('td', { class: 'hide-narrow' }, key.scopes.join(', ')),
            h('td', { class: 'hide-narrow' }, key.last_used_at ? fmtShort(key.last_used_at) : 'never'),
            h('td', {}, h('span', { class: 'badge ' + (status === 'active' ? 'ok' : 'revoked') }, status)),
            h('td', {}, status === 'active' ? revokeControl(key) : ''));
        })))));
    }, (err) => list.replaceChildren(stateBox('error', 'API keys could not be loaded: ' + describe(err), () => refreshAll())));
  }

  function revokeControl(key) {
    const cell = h('span', { class: 'row' });
    const start = h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke key ${key.name}` }, 'Revoke');
    start.addEventListener('click', () => {
      const confirm = h('button', { type: 'button', class: 'danger confirm', 'aria-label': `Confirm revoking key ${key.name}` }, 'Confirm revoke');
      const cancel = h('button', { type: 'button' }, 'Cancel');
      cancel.addEventListener('click', () => { cell.replaceChildren(start); start.focus(); });
      confirm.addEventListener('click', async () => {
        confirm.disabled = true;
        cancel.disabled = true;
        try {
          const { position } = await api(`/api/v1/keys/${encodeURIComponent(key.id)}`, { method: 'DELETE' });
          await loadKeys(undefined, position);
          $('#key-name').focus();
        } catch (err) {
          cell.replaceChildren(h('span', { class: 'form-error', role: 'alert' }, 'Not revoked: ' + describe(err)), start);
        }
      });
      cell.replaceChildren(confirm, cancel);
      confirm.focus();
    });
    cell.append(start);
    return cell;
  }

  function renderScopeChoices() {
    const box = $('#key-scopes');
    box.replaceChildren(...SCOPES.filter((s) => s !== 'usage:platform_wide' || can('usage:platform_wide')).map((scope) => {
      const id = 'scope-' + scope.replace(/[^a-z]/g, '-');
      return h('label', { class: 'inline-check', for: id },
        h('input', { id, type: 'checkbox', name: 'scopes', value: scope, checked: DEFAULT_SCOPES.includes(scope) }), scope);
    }));
  }

  async function createKey(event) {
    event.preventDefault();
    const error = $('#key-error');
    error.hidden = true;
    const name = $('#key-name').value.trim();
    if (!name) {
      error.textContent = 'Give the key a name.';
      error.hidden = false;
      $('#key-name').focus();
      return;
    }
    const body = { name, scopes: $$('#key-scopes input:checked').map((i) => i.value) };
    const expiry = $('#key-expiry').value.trim();
    if (expiry) body.expires_in_days = Number(expiry);
    $('#key-create').disabled = true;
    try {
      const { data } = await api('/api/v1/keys', { method: 'POST', body });
      $('#new-key-secret').textContent = data.key;
      $('#new-key').hidden = false;
      $('#key-form').reset();
      renderScopeChoices();
      $('#new-key-secret').focus();
      await loadKeys(undefined, data.position);
    } catch (err) {
      error.textContent = 'The key was not created: ' + describe(err);
      error.hidden = false;
    } finally {
      $('#key-create').disabled = false;
    }
  }

  function forgetNewKey() {
    $('#new-key-secret').textContent = '';
    $('#new-key').hidden = true;
    $('#key-name').focus();
  }

  async function copyNewKey() {
    const secret = $('#new-key-secret').textContent;
    try {
      await navigator.clipboard.writeText(secret);
      $('#new-key-copy').textContent = 'Copied';
    } catch (err) {
      const selection = window.getSelection();
      const range = document.createRange();
      range.selectNodeContents($('#new-key-secret'));
      selection.removeAllRanges();
      selection.addRange(range);
      $('#new-key-copy').textContent = 'Selected: press Ctrl+C';
    }
  }

  // admin audit log ----------------------------------------------------------------------
  function loadAudit(gen) {
    const body = panelBody('panel-audit');
    if (!can('admin')) {
      body.replaceChildren(stateBox('info', 'The audit log needs the admin permission.'));
      return Promise.resolve(null);
    }
    return guarded(gen, 'panel-audit', async () => {
      const { data, position } = await api('/api/v1/admin/audit-log', { params: { limit: 8 } });
      if (gen !== state.generation) return;
      note(position);
      if (!data.entries.length) {
        body.replaceChildren(stateBox('empty', 'No admin activity recorded yet.'));
        return;
      }
      body.replaceChildren(h('div', { class: 'table-wrap' }, h('table', { id: 'audit-table', class: 'stack-narrow' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'When'), h('th', { scope: 'col' }, 'Actor'),
          h('th', { scope: 'col' }, 'Action and target'), h('th', { scope: 'col' }, 'Outcome'))),
        h('tbody', {}, data.entries.map((e) => h('tr', {},
          h('td', {}, fmtShort(e.recorded_at)), h('td', { class: 'actor' }, e.actor),
          h('td', { class: 'wrap' }, h('code', {}, e.action), e.target ? h('div', { class: 'muted small' }, breakable(e.target)) : null),
          h('td', {}, h('span', { class: 'badge ' + e.outcome, title: e.reason || null }, e.outcome))))))));
    }, (err) => body.replaceChildren(stateBox('error', 'The audit log could not be loaded: ' + describe(err), () => refreshAll())));
  }

  // docs access --------------------------------------------------------------------------
  function loadDocs(gen, minPosition) {
    const list = $('#docs-list');
    const form = $('#docs-form');
    if (!can('admin')) {
      form.hidden = true;
      list.replaceChildren(stateBox('info', 'Documentation access needs the admin permission.'));
      return Promise.resolve(null);
    }
    if (document.body.dataset.docsAccess !== 'configured') {  // asking would only answer 503
      form.hidden = true;
      list.replaceChildren(stateBox('info', 'Documentation access management is not configured: set CF_API_TOKEN, CF_ACCOUNT_ID and CF_ACCESS_GROUP_ID.'));
      list.firstChild.id = 'docs-not-configured';
      return Promise.resolve(null);
    }
    return guarded(gen, 'panel-docs', async () => {
      let data;
      try {
        data = (await api('/api/v1/docs/access', { params: { min_position: minPosition } })).data;
      } catch (err) {
        if (err instanceof ApiError && err.status === 503) {
          form.hidden = true;
          list.replaceChildren(stateBox('info', 'Documentation access management is not configured: set CF_API_TOKEN, CF_ACCOUNT_ID and CF_ACCESS_GROUP_ID.'));
          list.firstChild.id = 'docs-not-configured';
          return;
        }
        throw err;
      }
      if (gen !== undefined && gen !== state.generation) return;
      form.hidden = false;
      if (!data.users.length) {
        list.replaceChildren(stateBox('empty', 'Nobody has access to the protected documentation.'));
        return;
      }
      list.replaceChildren(h('ul', { class: 'budgets', id: 'docs-users' }, data.users.map((email) => {
        const revoke = h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke documentation access for ${email}` }, 'Revoke');
        revoke.addEventListener('click', () => changeDocsAccess('revoke', { email }));
        return h('li', { class: 'budget budget-head' }, h('span', {}, email), revoke);
      })));
    }, (err) => {
      form.hidden = true;
      list.replaceChildren(stateBox('error', 'Documentation access could not be loaded: ' + describe(err), () => refreshAll()));
    });
  }

  async function changeDocsAccess(action, body) {
    const error = $('#docs-error');
    error.hidden = true;
    try {
      const { position } = await api('/api/v1/docs/access/' + action, { method: 'POST', body });
      if (action === 'grant') $('#docs-form').reset();
      await loadDocs(undefined, position);
    } catch (err) {
      error.textContent = (action === 'grant' ? 'Not granted: ' : 'Not revoked: ') + describe(err);
      error.hidden = false;
    }
  }

  // ---------------------------------------------------------------------------------------
  // session
  // kind 'error' (role alert, in the error colours) or 'info' (role status: e.g. signed out)
  function showLogin(message, kind = 'error') {
    stopTimer();
    $('#app-view').hidden = true;
    $('#login-view').hidden = false;
    for (const [id, own] of [['#login-error', 'error'], ['#login-notice', 'info']]) {
      const box = $(id);
      box.hidden = !message || kind !== own;
      box.textContent = kind === own ? message || '' : '';
    }
    $('#login-email').focus();
  }

  function sessionEnded() {
    if (state.ended) return;
    state.ended = true;
    state.generation++;
    showLogin('Your session has ended. Sign in again.');
  }

  async function login(event) {
    event.preventDefault();
    const email = $('#login-email').value.trim();
    const password = $('#login-password').value;
    const error = $('#login-error');
    $('#login-notice').hidden = true;
    if (!email || !password) {
      error.textContent = 'Enter your e-mail and password.';
      error.hidden = false;
      return;
    }
    $('#login-submit').disabled = true;
    try {
      await api('/api/v1/auth/login', { method: 'POST', body: { email, password } });
      $('#login-password').value = '';
      await enterDashboard();
    } catch (err) {
      error.textContent = err.status === 401 ? 'Wrong e-mail or password.' : 'Sign-in failed: ' + describe(err);
      error.hidden = false;
    } finally {
      $('#login-submit').disabled = false;
    }
  }

  async function logout() {
    try {
      await api('/api/v1/auth/logout', { method: 'POST', body: {} });
    } catch (err) {
      // the session is gone either way for this page
    }
    state.me = null;
    state.generation++;
    showLogin('You have signed out.', 'info');
  }

  async function enterDashboard() {
    let me;
    let config;
    try {
      [me, config] = await Promise.all([api('/api/v1/auth/me'), api('/api/v1/deployment/config')]);
    } catch (err) {
      if (err.status !== 401) showLogin('The service is not available: ' + describe(err) + '. Try again shortly.');
      return;
    }
    state.ended = false;
    state.me = me.data;
    state.config = config.data;
    $('#whoami').textContent = `${state.me.email} · ${state.me.tenant_id} / ${state.me.org_id} · ${state.config.mode === 'invpc' ? 'In-VPC' : 'SaaS'}`;
    $('#login-view').hidden = true;
    $('#app-view').hidden = false;
    renderScopeChoices();
    $('[data-metric="credits"]').disabled = !can(BILLING);
    startTimer();
    await refreshAll();
  }

  function startTimer() {
    stopTimer();
    state.timer = setInterval(() => {
      if ($('#auto-refresh').checked && !state.refreshing && document.visibilityState === 'visible' && state.me) refreshAll();
    }, 30000);
  }

  function stopTimer() {
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
  }

  // ---------------------------------------------------------------------------------------
  // wiring
  function wire() {
    $('#login-form').addEventListener('submit', login);
    $('#logout').addEventListener('click', logout);
    $('#refresh').addEventListener('click', () => refreshAll());
    $('#range-form').addEventListener('submit', (event) => { event.preventDefault(); refreshAll(); });
    $('#granularity').addEventListener('change', () => refreshAll());
    for (const button of $$('.presets button')) {
      button.addEventListener('click', () => {
        const end = todayUtc();
        setRange(addDays(end, -(Number(button.dataset.days) - 1)), end);
        refreshAll();
      });
    }
    for (const button of $$('[data-metric]')) {
      button.addEventListener('click', () => {
        state.metric = button.dataset.metric;
        for (const other of $$('[data-metric]')) other.setAttribute('aria-pressed', String(other === button));
        renderUsageChart();
      });
    }
    $('#key-form').addEventListener('submit', createKey);
    $('#new-key-done').addEventListener('click', forgetNewKey);
    $('#new-key-copy').addEventListener('click', copyNewKey);
    $('#docs-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const email = $('#docs-email').value.trim();
      const reason = $('#docs-reason').value.trim();
      if (email) changeDocsAccess('grant', reason ? { email, reason } : { email });
    });
    widthObserver.observe(document.body, { childList: true, subtree: true });
  }

  function boot() {
    Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;
    Chart.defaults.color = '#5b6675';
    wire();
    initialRange();
    if (document.body.dataset.session === 'no') showLogin();
    else enterDashboard();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
}());
