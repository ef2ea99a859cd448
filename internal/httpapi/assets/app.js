// The status page: it reads status.json every second and redraws. Text is only ever set with
// textContent, so nothing a task reports (an error message, an id) can become markup.
'use strict';

(function () {
  const refreshMs = 1000;
  const el = (id) => document.getElementById(id);
  const setText = (id, value) => { el(id).textContent = value; };

  // duration renders seconds the way a person reads them: 850 ms, 12.3 s, 4 m 05 s, 2 h 07 m.
  function duration(seconds) {
    if (seconds < 1) return Math.round(seconds * 1000) + ' ms';
    if (seconds < 60) return seconds.toFixed(1) + ' s';
    const s = Math.floor(seconds);
    const pad = (n) => String(n).padStart(2, '0');
    if (s < 3600) return Math.floor(s / 60) + ' m ' + pad(s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + pad(Math.floor((s % 3600) / 60)) + ' m';
  }

  function clock(iso) {
    if (!iso) return '–';
    return new Date(iso).toLocaleTimeString();
  }

  function ago(iso, nowIso) {
    if (!iso) return 'never';
    const seconds = (new Date(nowIso) - new Date(iso)) / 1000;
    return duration(Math.max(seconds, 0)) + ' ago';
  }

  function cell(value, className) {
    const td = document.createElement('td');
    td.textContent = value;
    if (className) td.className = className;
    return td;
  }

  function fill(bodyId, emptyId, tasks, cells) {
    const rows = tasks.map((t) => {
      const tr = document.createElement('tr');
      tr.dataset.taskId = t.id;
      for (const td of cells(t)) tr.appendChild(td);
      return tr;
    });
    el(bodyId).replaceChildren(...rows);
    el(emptyId).hidden = tasks.length > 0;
  }

  function render(s) {
    document.title = 'dlite · ' + (s.name || 'runner');
    setText('name', s.name || 'dlite runner');
    const ready = el('ready');
    ready.textContent = s.ready ? 'ready' : 'not ready: ' + s.notReady;
    ready.className = 'badge ' + (s.ready ? 'ok' : 'warn');

    setText('delegate-id', s.delegateId || 'not registered');
    setText('phase', s.phase);
    setText('manager-status', s.managerStatus || '–');
    setText('last-heartbeat', ago(s.lastHeartbeat, s.now));
    setText('registrations', String(s.registrations));
    setText('slots', s.slots.inUse + ' / ' + s.slots.total);
    const meter = el('slots-meter');
    meter.max = Math.max(s.slots.total, 1);
    meter.value = s.slots.inUse;
    setText('finished-total', String(s.finishedTotal));
    setText('pending', String(s.pendingResults));
    setText('spool', String(s.spoolDepth));
    setText('admission', s.admission
      ? 'CPU ' + s.admission.cpuPercent.toFixed(1) + '%, memory ' + s.admission.memoryPercent.toFixed(1) + '% of ' +
        s.admission.source + (s.admission.holding ? ' — holding back new work' : '')
      : 'no ceiling');
    setText('task-types', s.taskTypes.join(', ') || '–');

    setText('running-count', String(s.running.length));
    fill('running-body', 'running-empty', s.running, (t) => [
      cell(t.id, 'id'), cell(t.type), cell(clock(t.startedAt)), cell(duration(t.seconds), 'num'),
    ]);
    const stages = s.stages || [];
    setText('stages-count', String(stages.length));
    fill('stages-body', 'stages-empty', stages, (st) => [
      cell(st.id, 'id'), cell(st.state), cell(clock(st.created)),
      cell(st.steps.map((p) => (p.name || p.id) + ' (' + p.backend + ', ' + p.status + (p.error ? ': ' + p.error : '') + ')').join('; ') || '–'),
    ]);
    setText('finished-count', String(s.finished.length));
    fill('finished-body', 'finished-empty', s.finished, (t) => [
      cell(t.id, 'id'), cell(t.type), cell(t.code, 'code code-' + t.code.toLowerCase()),
      cell(duration(t.seconds), 'num'), cell(clock(t.finishedAt)), cell(t.error || '', 'error'),
    ]);
  }

  function connection(ok, detail) {
    const c = el('connection');
    c.textContent = ok ? 'live' : 'connection lost (' + detail + '); retrying';
    c.className = 'connection ' + (ok ? 'ok' : 'warn');
  }

  async function refresh() {
    try {
      const res = await fetch('status.json', { cache: 'no-store', credentials: 'same-origin' });
      if (!res.ok) throw new Error('HTTP ' + res.status);
      render(await res.json());
      connection(true);
    } catch (err) {
      connection(false, err.message);
    } finally {
      setTimeout(refresh, refreshMs);
    }
  }

  refresh();
})();
