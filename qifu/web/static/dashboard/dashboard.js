/* 督办统计 (issue 10, docs/dashboard.md): the supervisor dashboard over the statistics API.
 *
 * Every figure comes from /api/v1/stats/* with the logged-in user's bearer token (kept in
 * sessionStorage), so the row visibility of SPEC §1 is the API's. No figure is computed here
 * except the change against the previous period (two summary calls) and formatting.
 *
 * For tests and the render benchmark: window.__qifu (state, charts, last data), and
 * window.__qifuRendered = performance.now() when every chart of the first full render finished
 * drawing (window.__qifuRenderCount counts full renders).
 */
(() => {
  'use strict';

  const API = '/api/v1';
  const TOKEN_KEY = 'qifu.dashboard.token';
  const $ = (sel) => document.querySelector(sel);
  const STATUS_LABELS = {submitted: '待受理', accepted: '已受理', rejected: '不予受理', dispatched: '已交办',
    in_progress: '办理中', on_hold: '挂起', replied: '已答复', closed: '已办结'};
  const CHANNEL_LABELS = {web: '网站', app: '移动端', hotline: '热线', window: '专窗', inquiry: '问诊',
    clinic: '坐诊', email: '邮件', open311: 'Open311', import: '导入'};
  const GROUP_LABELS = {department: '承办单位', region: '镇街园区', grid: '网格', category: '类别',
    service_type: '服务类型', channel: '渠道', officer: '服务专员', day: '日', week: '周', month: '月', quarter: '季度'};
  const COUNT_LABELS = {received: '收件', accepted: '受理', answered: '直接答复', dispatched: '交办',
    replied: '已答复', closed: '办结', closed_on_time: '按期办结', overdue: '当前超期', response_due: '应响应',
    responded: '按时响应', rated: '已评价', satisfied: '满意', closed_rated: '办结已回访', reopened: '重办',
    returned: '退单'};
  // SPEC §6 measures shown as cards (docs/statistics.md): counts, then rates with their fraction
  const KPIS = [
    {key: 'received', label: '收件', neutral: true},
    {key: 'closed', label: '办结'},
    {key: 'overdue', label: '当前超期', lowerBetter: true},
    {key: 'closure_rate', label: '办结率', num: 'closed', den: 'accepted'},
    {key: 'on_time_rate', label: '按期办结率', num: 'closed_on_time', den: 'closed'},
    {key: 'response_rate', label: '响应率', num: 'responded', den: 'response_due'},
    {key: 'satisfaction_rate', label: '满意率', num: 'satisfied', den: 'rated'},
    {key: 'rated_share', label: '回访率', num: 'closed_rated', den: 'closed'},
    {key: 'reopen_rate', label: '重办率', num: 'reopened', den: 'replied', lowerBetter: true},
    {key: 'return_rate', label: '退单率', num: 'returned', den: 'dispatched', lowerBetter: true},
  ];
  const TABLE_COUNTS = ['received', 'accepted', 'closed', 'closed_on_time', 'overdue'];
  const TABLE_RATES = ['closure_rate', 'on_time_rate', 'response_rate', 'satisfaction_rate', 'rated_share',
    'reopen_rate', 'return_rate'];
  const RATE_LABELS = Object.fromEntries(KPIS.filter((k) => k.num).map((k) => [k.key, k.label]));
  const TOP = 15; // bars shown in a breakdown chart (the table lists every group)
  const DRILL_PAGE = 20;

  const state = {kind: 'month', month: '', qYear: 0, quarter: 1, year: 0, from: '', to: '',
    groupBy: 'department', area: 'grid', filters: {}};
  const charts = {};
  const drillState = {params: null, offset: 0, count: 0};
  let loadSeq = 0;
  window.__qifu = {state, charts, data: {}, exports: []};
  window.__qifuRenderCount = 0;

  // ------------------------------------------------------------------ dates and periods
  const iso = (d) => d.toISOString().slice(0, 10);
  const utc = (y, m, d) => new Date(Date.UTC(y, m, d)); // m: 0-based; overflow rolls over
  const parseIso = (s) => { const [y, m, d] = s.split('-').map(Number); return utc(y, m - 1, d); };
  const addDays = (d, n) => utc(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + n);
  const DAY = 86400000;
  const pad = (n) => String(n).padStart(2, '0');

  function period() {
    /* {from, to, prevFrom, prevTo, label, ranking}: the picked period, the previous one of the same
     * kind (month, quarter, year; a custom range: the same number of days just before), and the
     * ranking period (the month or quarter; for a year or a range the quarter of its last day
     * that has begun). */
    let from, to, prevFrom, prevTo, label, ranking;
    if (state.kind === 'month') {
      const [y, m] = state.month.split('-').map(Number);
      from = utc(y, m - 1, 1); to = utc(y, m, 0); prevFrom = utc(y, m - 2, 1); prevTo = utc(y, m - 1, 0);
      label = `${y}年${m}月`; ranking = state.month;
    } else if (state.kind === 'quarter') {
      const y = state.qYear, q = state.quarter;
      from = utc(y, 3 * q - 3, 1); to = utc(y, 3 * q, 0); prevFrom = utc(y, 3 * q - 6, 1); prevTo = utc(y, 3 * q - 3, 0);
      label = `${y}年第${q}季度`; ranking = `${y}-Q${q}`;
    } else if (state.kind === 'year') {
      const y = state.year;
      from = utc(y, 0, 1); to = utc(y, 11, 31); prevFrom = utc(y - 1, 0, 1); prevTo = utc(y - 1, 11, 31);
      label = `${y}年`;
    } else {
      from = parseIso(state.from); to = parseIso(state.to);
      if (to < from) [from, to] = [to, from];
      const days = Math.round((to - from) / DAY) + 1;
      prevTo = addDays(from, -1); prevFrom = addDays(from, -days);
      label = `${iso(from)} 至 ${iso(to)}`;
    }
    if (!ranking) {
      const today = parseIso(iso(new Date()));
      const last = to < today ? to : (from > today ? from : today);
      ranking = `${last.getUTCFullYear()}-Q${Math.floor(last.getUTCMonth() / 3) + 1}`;
    }
    const days = Math.round((to - from) / DAY) + 1;
    const trend = days <= 31 ? 'day' : days <= 92 ? 'week' : days <= 731 ? 'month' : 'quarter';
    return {from: iso(from), to: iso(to), prevFrom: iso(prevFrom), prevTo: iso(prevTo), label, ranking, trend};
  }

  function initState() {
    /* From the address (?period=2026-05 | 2026-Q2 | 2026 | from=..&to=.., group_by=, and the
     * filters of the statistics API), else the current month. */
    const p = new URLSearchParams(location.search);
    const today = new Date();
    state.month = `${today.getFullYear()}-${pad(today.getMonth() + 1)}`;
    state.qYear = state.year = today.getFullYear();
    state.quarter = Math.floor(today.getMonth() / 3) + 1;
    state.from = `${state.month}-01`; state.to = iso(utc(today.getFullYear(), today.getMonth(), today.getDate()));
    const per = p.get('period') || '';
    let m;
    if ((m = per.match(/^(\d{4})-(\d{2})$/))) { state.kind = 'month'; state.month = per; }
    else if ((m = per.match(/^(\d{4})-Q([1-4])$/))) { state.kind = 'quarter'; state.qYear = +m[1]; state.quarter = +m[2]; }
    else if ((m = per.match(/^(\d{4})$/))) { state.kind = 'year'; state.year = +m[1]; }
    else if (p.get('from') && p.get('to')) { state.kind = 'custom'; state.from = p.get('from'); state.to = p.get('to'); }
    if (p.get('group_by') && GROUP_LABELS[p.get('group_by')]) state.groupBy = p.get('group_by');
    for (const f of ['department_id', 'region_id', 'grid_id', 'category_id', 'service_type', 'channel', 'officer_id']) {
      if (p.get(f)) state.filters[f] = p.get(f);
    }
    $('#period-kind').value = state.kind;
    $('#period-month').value = state.month;
    $('#period-quarter-year').value = state.qYear;
    $('#period-quarter').value = String(state.quarter);
    $('#period-year').value = state.year;
    $('#date-from').value = state.from;
    $('#date-to').value = state.to;
    $('#group-by').value = state.groupBy;
    $('#area-kind').value = state.area;
    showKindInputs();
  }

  function showKindInputs() {
    for (const el of document.querySelectorAll('.toolbar [data-kind]')) el.hidden = el.dataset.kind !== state.kind;
  }

  function readPickers() {
    state.kind = $('#period-kind').value;
    state.month = $('#period-month').value || state.month;
    state.qYear = +$('#period-quarter-year').value || state.qYear;
    state.quarter = +$('#period-quarter').value;
    state.year = +$('#period-year').value || state.year;
    state.from = $('#date-from').value || state.from;
    state.to = $('#date-to').value || state.to;
    state.groupBy = $('#group-by').value;
    state.area = $('#area-kind').value;
    showKindInputs();
  }

  // ------------------------------------------------------------------ the API
  const token = () => sessionStorage.getItem(TOKEN_KEY);

  class ApiError extends Error {}

  async function api(path, params, {raw = false} = {}) {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== '') query.set(k, v);
    const response = await fetch(`${API}${path}${query.toString() ? '?' + query : ''}`,
      {headers: {Authorization: `Bearer ${token()}`}});
    if (response.status === 401) {
      logout('登录已过期，请重新登录');
      throw new ApiError('未登录');
    }
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      throw new ApiError(problem.detail || problem.title || `HTTP ${response.status}`);
    }
    return raw ? response : response.json();
  }

  const summary = (from, to, groupBy) => api('/stats/summary', {date_from: from, date_to: to, group_by: groupBy, ...state.filters});

  // ------------------------------------------------------------------ formatting
  const fmtInt = (n) => (n === null || n === undefined ? '—' : Number(n).toLocaleString('zh-CN'));
  const fmtPct = (v) => (v === null || v === undefined ? '—' : `${(v * 100).toFixed(1)}%`);
  const fmtHours = (v) => (v === null || v === undefined ? '—' : v.toFixed(1));
  const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
  const groupKey = (key) => (key === null || key === undefined ? 'none' : String(key));

  function numButton(value, measure, groupBy, key, {from, to, label, cls = ''} = {}) {
    /* A figure that opens its ticket list (the drill-down of the same population). */
    const attrs = [`data-measure="${measure}"`, `data-value="${value}"`];
    if (groupBy) attrs.push(`data-group-by="${groupBy}"`, `data-group="${esc(groupKey(key))}"`);
    if (from) attrs.push(`data-from="${from}"`, `data-to="${to}"`);
    if (label) attrs.push(`data-label="${esc(label)}"`);
    return `<button type="button" class="num ${cls}" ${attrs.join(' ')} title="查看工单清单">${fmtInt(value)}</button>`;
  }

  function delta(cur, prev, isRate, lowerBetter, neutral = false) {
    if (cur === null || cur === undefined || prev === null || prev === undefined) return '<span class="delta flat">较上期 —</span>';
    const d = cur - prev;
    const cls = d === 0 || neutral ? 'flat' : (d > 0) !== !!lowerBetter ? 'good' : 'bad';
    const sign = d > 0 ? '+' : d < 0 ? '−' : '±';
    let text;
    if (isRate) text = `${sign}${Math.abs(d * 100).toFixed(1)} 个百分点`;
    else text = `${sign}${fmtInt(Math.abs(d))}${prev ? `（${sign}${Math.abs((d / prev) * 100).toFixed(1)}%）` : ''}`;
    return `<span class="delta ${cls}" data-delta="${d}">较上期 ${text}</span>`;
  }

  // ------------------------------------------------------------------ rendering
  function renderKpis(total, prev, per) {
    $('#kpis').innerHTML = KPIS.map((k) => {
      const value = total[k.key];
      if (!k.num) {
        return `<div class="kpi" data-kpi="${k.key}"><div class="name">${k.label}</div>
          ${numButton(value, k.key, null, null, {label: k.label, cls: 'value'})}
          <div class="delta-line">${delta(value, prev[k.key], false, k.lowerBetter, k.neutral)}</div></div>`;
      }
      return `<div class="kpi" data-kpi="${k.key}"><div class="name">${k.label}</div>
        <button type="button" class="num value" data-measure="${k.num}" data-value="${value ?? ''}"
          data-label="${k.label}（分子：${COUNT_LABELS[k.num]}）" title="查看分子工单清单">${fmtPct(value)}</button>
        <div class="parts">${COUNT_LABELS[k.num]} ${numButton(total[k.num], k.num, null, null, {label: COUNT_LABELS[k.num]})}
          / ${COUNT_LABELS[k.den]} ${numButton(total[k.den], k.den, null, null, {label: COUNT_LABELS[k.den]})}</div>
        <div class="delta-line">${delta(value, prev[k.key], true, k.lowerBetter)}</div></div>`;
    }).join('');
    $('#period-label').textContent = `${per.label}（${per.from} 至 ${per.to}；对比上期 ${per.prevFrom} 至 ${per.prevTo}）`;
  }

  function renderRanking(ranking) {
    const head = `<thead><tr><th>名次</th><th class="text">承办单位</th><th>得分</th><th>收件</th><th>办结</th>
      ${['closure_rate', 'on_time_rate', 'response_rate', 'satisfaction_rate', 'reopen_rate', 'return_rate']
    .map((r) => `<th>${RATE_LABELS[r]}</th>`).join('')}</tr></thead>`;
    const range = {from: ranking.date_from, to: ranking.date_to};
    const rows = ranking.rows.map((r) => `<tr data-department="${r.department_id}">
      <td>${r.rank ?? '—'}</td><td class="text">${esc(r.department)}</td>
      <td data-score="${r.score ?? ''}">${r.score === null ? '—' : r.score.toFixed(1)}</td>
      <td>${numButton(r.received, 'received', 'department', r.department_id, {...range, label: `${r.department} 收件`})}</td>
      <td>${numButton(r.closed, 'closed', 'department', r.department_id, {...range, label: `${r.department} 办结`})}</td>
      ${['closure_rate', 'on_time_rate', 'response_rate', 'satisfaction_rate', 'reopen_rate', 'return_rate']
    .map((k) => `<td>${fmtPct(r[k])}</td>`).join('')}</tr>`).join('');
    $('#ranking').innerHTML = head + `<tbody>${rows || '<tr><td colspan="11" class="text">本期无数据</td></tr>'}</tbody>`;
    $('#ranking-period').textContent = `${ranking.period}（${ranking.date_from} 至 ${ranking.date_to}）`;
  }

  function renderGroupTable(data) {
    const g = data.group_by;
    const head = `<thead><tr><th class="text">${GROUP_LABELS[g]}</th>${TABLE_COUNTS.map((c) => `<th>${COUNT_LABELS[c]}</th>`).join('')}
      ${TABLE_RATES.map((r) => `<th>${RATE_LABELS[r]}</th>`).join('')}<th>答复用时中位数(工时)</th></tr></thead>`;
    const line = (r, total) => `<tr${total ? ' class="total"' : ''}><td class="text">${esc(r.label)}</td>
      ${TABLE_COUNTS.map((c) => `<td>${numButton(r[c], c, total ? null : g, r.key, {label: `${r.label} ${COUNT_LABELS[c]}`})}</td>`).join('')}
      ${TABLE_RATES.map((k) => `<td>${fmtPct(r[k])}</td>`).join('')}<td>${fmtHours(r.hours_to_reply_p50)}</td></tr>`;
    $('#group-table').innerHTML = head + `<tbody>${data.rows.map((r) => line(r, false)).join('')}${line({...data.total, label: '合计'}, true)}</tbody>`;
    $('#group-title').textContent = `按${GROUP_LABELS[g]}`;
  }

  const PALETTE = ['#5470c6', '#91cc75', '#ee6666', '#fac858', '#73c0de'];

  function barOption(data, groupBy, {horizontal = false, top = TOP, rate = true} = {}) {
    /* Received and closed per group (the first `top` groups by volume; time groups all, in date
     * order) and the closure rate on a second axis. Each bar carries its group key for the drill. */
    const rows = data.rows.slice(0, top);
    const labels = rows.map((r) => r.label);
    const item = (r, measure) => ({value: r[measure], key: groupKey(r.key), measure, groupBy});
    const series = [
      {name: '收件', type: 'bar', data: rows.map((r) => item(r, 'received'))},
      {name: '办结', type: 'bar', data: rows.map((r) => item(r, 'closed'))},
    ];
    if (rate) series.push({name: '办结率', type: 'line', yAxisIndex: 1, tooltip: {valueFormatter: fmtPct}, data: rows.map((r) => ({value: r.closure_rate, key: groupKey(r.key), measure: 'closed', groupBy}))});
    const cat = {type: 'category', data: labels, axisLabel: {interval: 0, width: 110, overflow: 'truncate', rotate: horizontal ? 0 : (labels.length > 8 ? 30 : 0)}};
    const val = [{type: 'value', name: '件'}];
    if (rate) val.push({type: 'value', name: '办结率', min: 0, max: 1, axisLabel: {formatter: (v) => `${Math.round(v * 100)}%`}, splitLine: {show: false}});
    if (horizontal) { cat.inverse = true; series.forEach((s) => { if (s.type === 'line') s.xAxisIndex = 1; }); }
    return {
      animation: false, color: PALETTE,
      tooltip: {trigger: 'axis', valueFormatter: fmtInt},
      legend: {top: 0}, grid: {left: horizontal ? 120 : 50, right: 50, top: 36, bottom: horizontal ? 24 : 60},
      xAxis: horizontal ? val : cat, yAxis: horizontal ? cat : val, series,
    };
  }

  // ECharts (1 MB) is the deferred script after this one (index.html): this script sends the page's
  // API calls first, ECharts is parsed and run while they are answered, and DOMContentLoaded fires
  // once it has run (document.readyState is already 'interactive' while deferred scripts run, so it
  // cannot tell). KPI cards and tables are drawn as soon as their data arrive; charts wait for it.
  const echartsReady = new Promise((resolve) => {
    if (window.echarts) resolve();
    else document.addEventListener('DOMContentLoaded', () => resolve(), {once: true});
  }).then(() => { window.__qifuEchartsAt = performance.now(); });

  async function draw(name, option) {
    /* Set a chart's option (once ECharts is there) and resolve when ECharts finished drawing it. */
    await echartsReady;
    const el = $(`#chart-${name}`);
    const chart = charts[name] || (charts[name] = echarts.init(el, null, {renderer: 'canvas'}));
    if (!chart.__qifuClick) {
      chart.on('click', (p) => {
        const d = p.data || {};
        if (d.measure) openDrill({measure: d.measure, group_by: d.groupBy, group: d.key, label: `${p.name} ${COUNT_LABELS[d.measure]}`});
      });
      chart.__qifuClick = true;
    }
    return new Promise((resolve) => {
      chart.off('finished');
      chart.on('finished', () => { chart.off('finished'); resolve(); });
      chart.setOption(option, true);
    });
  }

  // ------------------------------------------------------------------ loading
  async function loadAll() {
    /* Fire every call of the page at once and draw each part as soon as its data arrives (the
     * drawing of one chart overlaps the wait for the others). */
    const seq = ++loadSeq;
    const fresh = () => seq === loadSeq; // false once a newer pick is loading
    const startedAt = performance.now();
    let dataAt = startedAt;
    const per = period();
    const memo = new Map();
    const get = (from, to, g) => {
      const k = `${from}|${to}|${g}`;
      if (!memo.has(k)) memo.set(k, summary(from, to, g));
      return memo.get(k);
    };
    const data = window.__qifu.data;
    const arrived = (values) => { dataAt = Math.max(dataAt, performance.now()); return fresh() ? values : null; };
    const part = (promise, render) => promise.then(arrived).then((v) => (v === null ? null : render(v)));
    setStatus('加载中…');
    data.period = per;
    $('#trend-grouping').textContent = `按${GROUP_LABELS[per.trend]}`;
    try {
      await Promise.all([
        part(Promise.all([get(per.from, per.to, state.groupBy), get(per.prevFrom, per.prevTo, 'service_type')]),
          ([cur, prev]) => {
            Object.assign(data, {summary: cur, previous: prev});
            renderKpis(cur.total, prev.total, per);
            renderGroupTable(cur);
            return draw('group', barOption(cur, state.groupBy, {top: 20}));
          }),
        part(get(per.from, per.to, per.trend), (trend) => {
          data.trend = trend;
          return draw('trend', barOption(trend, per.trend, {top: Infinity}));
        }),
        part(api('/stats/ranking', {period: per.ranking, ...state.filters}), (ranking) => {
          data.ranking = ranking;
          renderRanking(ranking);
        }),
        part(get(per.from, per.to, 'category'), (category) => {
          data.category = category;
          return draw('category', barOption(category, 'category', {horizontal: true, rate: false}));
        }),
        part(get(per.from, per.to, state.area), (area) => {
          data.area = area;
          return draw('area', barOption(area, state.area, {horizontal: true, rate: false}));
        }),
        part(get(per.from, per.to, 'channel'), (channel) => {
          data.channel = channel;
          return draw('channel', barOption(channel, 'channel', {rate: false}));
        }),
      ]);
      if (!fresh()) return;
      window.__qifuRenderCount += 1;
      window.__qifuLastRender = performance.now();
      // milliseconds since the navigation start: loading started, the last data arrived, all drawn
      window.__qifuTimes = {start: startedAt, data: dataAt, drawn: window.__qifuLastRender, echarts: window.__qifuEchartsAt};
      if (window.__qifuRendered === undefined) window.__qifuRendered = window.__qifuLastRender;
      setStatus(`已更新：${new Date().toLocaleTimeString('zh-CN')}`);
    } catch (err) {
      if (!fresh()) return;
      if (!(err instanceof ApiError)) console.error(err);
      setStatus(`加载失败：${err.message}`, true);
    }
  }

  function setStatus(text, error = false) {
    const el = $('#status');
    el.textContent = text;
    el.classList.toggle('error', error);
  }

  // ------------------------------------------------------------------ drill-down
  function openDrill({measure, group_by, group, from, to, label}) {
    const per = period();
    drillState.params = {measure, group_by: group_by || undefined, group: group_by ? group : undefined,
      date_from: from || per.from, date_to: to || per.to, ...state.filters};
    drillState.offset = 0;
    $('#drill-title').textContent = label || COUNT_LABELS[measure] || measure;
    $('#drill-scope').textContent = `${drillState.params.date_from} 至 ${drillState.params.date_to}`;
    $('#drill').hidden = false;
    return loadDrill();
  }

  async function loadDrill() {
    try {
      const data = await api('/stats/tickets', {...drillState.params, limit: DRILL_PAGE, offset: drillState.offset});
      drillState.count = data.count;
      window.__qifu.data.drill = data;
      $('#drill-count').textContent = data.count;
      $('#drill-count').dataset.count = data.count;
      $('#drill-table tbody').innerHTML = data.tickets.map((t) => `<tr><td class="text">${esc(t.number)}</td>
        <td class="text">${esc(t.title)}</td><td class="text">${STATUS_LABELS[t.status] || esc(t.status)}</td>
        <td class="text">${new Date(t.submitted_at).toLocaleString('zh-CN', {hour12: false})}</td>
        <td class="text">${CHANNEL_LABELS[t.channel] || esc(t.channel)}</td></tr>`).join('')
        || '<tr><td colspan="5" class="text">无工单</td></tr>';
      const pages = Math.max(1, Math.ceil(data.count / DRILL_PAGE));
      $('#drill-page').textContent = `第 ${Math.floor(drillState.offset / DRILL_PAGE) + 1} / ${pages} 页`;
      $('#drill-prev').disabled = drillState.offset === 0;
      $('#drill-next').disabled = drillState.offset + DRILL_PAGE >= data.count;
    } catch (err) {
      if (!(err instanceof ApiError)) console.error(err);
      setStatus(`工单清单加载失败：${err.message}`, true);
    }
  }

  // ------------------------------------------------------------------ exports
  async function exportFile(what, fmt) {
    /* Fetch the export with the token and hand the file to the browser as a download. */
    const per = period();
    const [path, params] = what === 'summary'
      ? ['/stats/summary', {date_from: per.from, date_to: per.to, group_by: state.groupBy, ...state.filters, format: fmt}]
      : ['/stats/ranking', {period: per.ranking, ...state.filters, format: fmt}];
    try {
      const response = await api(path, params, {raw: true});
      const blob = await response.blob();
      const match = /filename="([^"]+)"/.exec(response.headers.get('Content-Disposition') || '');
      const name = match ? match[1] : `${what}.${fmt}`;
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob);
      a.download = name;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 60000);
      window.__qifu.exports.push({what, fmt, name, status: response.status, type: response.headers.get('Content-Type'), size: blob.size});
      setStatus(`已导出：${name}`);
    } catch (err) {
      if (!(err instanceof ApiError)) console.error(err);
      setStatus(`导出失败：${err.message}`, true);
    }
  }

  // ------------------------------------------------------------------ login
  async function login(event) {
    event.preventDefault();
    $('#login-error').textContent = '';
    const body = new URLSearchParams({username: $('#username').value, password: $('#password').value});
    try {
      const response = await fetch(`${API}/auth/token`, {method: 'POST', body});
      const data = await response.json().catch(() => ({}));
      if (!response.ok) {
        $('#login-error').textContent = data.detail || data.title || '登录失败';
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, data.access_token);
      $('#password').value = '';
      await start();
    } catch (err) {
      console.error(err);
      $('#login-error').textContent = `登录失败：${err.message}`;
    }
  }

  function logout(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    for (const chart of Object.values(charts)) chart.dispose();
    for (const k of Object.keys(charts)) delete charts[k];
    $('#app').hidden = true;
    $('#drill').hidden = true;
    $('#login').hidden = false;
    $('#login-error').textContent = typeof message === 'string' ? message : '';
  }

  async function start() {
    /* Show the page and load it while /me says who is logged in (one round trip less). */
    const roles = {supervisor: '督办', admin: '管理员', officer: '服务专员', department: '承办单位'};
    $('#login').hidden = true;
    $('#app').hidden = false;
    $('#who').textContent = '';
    const me = api('/me');
    const loading = loadAll();
    let user;
    try {
      user = await me;
    } catch (err) {
      return; // 401: back on the login form
    }
    if (!roles[user.role]) {
      loadSeq += 1; // drop what is loading
      logout('本页面供督办、承办单位与服务专员账号使用');
      return;
    }
    $('#who').textContent = `${user.full_name}（${roles[user.role]}）`;
    await loading;
  }

  function wire() {
    $('#login-form').addEventListener('submit', login);
    $('#logout').addEventListener('click', () => logout());
    for (const id of ['#period-kind', '#period-month', '#period-quarter-year', '#period-quarter', '#period-year',
      '#date-from', '#date-to', '#group-by', '#area-kind']) {
      $(id).addEventListener('change', () => { readPickers(); loadAll(); });
    }
    document.body.addEventListener('click', (e) => {
      const b = e.target.closest('button.num');
      if (!b) return;
      openDrill({measure: b.dataset.measure, group_by: b.dataset.groupBy, group: b.dataset.group,
        from: b.dataset.from, to: b.dataset.to, label: b.dataset.label});
    });
    $('#drill-close').addEventListener('click', () => { $('#drill').hidden = true; });
    $('#drill-prev').addEventListener('click', () => { drillState.offset = Math.max(0, drillState.offset - DRILL_PAGE); loadDrill(); });
    $('#drill-next').addEventListener('click', () => { drillState.offset += DRILL_PAGE; loadDrill(); });
    for (const what of ['summary', 'ranking']) {
      for (const fmt of ['csv', 'xlsx']) $(`#export-${what}-${fmt}`).addEventListener('click', () => exportFile(what, fmt));
    }
    window.addEventListener('resize', () => Object.values(charts).forEach((c) => c.resize()));
  }

  wire();
  initState();
  if (token()) start(); else logout();
})();
