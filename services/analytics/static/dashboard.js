// The PAS analytics dashboard: reads this collector's /analytics API and draws it with Chart.js.
// Refreshes itself every data-refresh-s seconds. No network access beyond the collector.
"use strict";

(function () {
  const WINDOWS = {
    "1h": { ms: 3600e3, bucket: "1m" },
    "24h": { ms: 86400e3, bucket: "1h" },
    "7d": { ms: 7 * 86400e3, bucket: "1h" },
    "30d": { ms: 30 * 86400e3, bucket: "1d" },
  };
  const COLOURS = ["#2f6fde", "#e8833a", "#3aa76d", "#c2417f", "#8a63d2", "#d4a72c", "#4aa3b5", "#7a7f8c"];
  const refreshMs = Math.max(1, Number(document.body.dataset.refreshS) || 15) * 1000;
  const charts = {};
  let timer = null;

  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;

  function chosenWindow() {
    const key = document.getElementById("window").value;
    const spec = WINDOWS[key] || WINDOWS["24h"];
    const end = new Date();
    const start = new Date(end.getTime() - spec.ms);
    return { key, bucket: spec.bucket, from: start.toISOString(), to: end.toISOString() };
  }

  async function getJSON(path, params) {
    const query = new URLSearchParams(params).toString();
    const response = await fetch(`${path}?${query}`, { headers: { Accept: "application/json" } });
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
      throw new Error(`${path}: ${response.status} ${detail}`);
    }
    return response.json();
  }

  function label(time, bucket) {
    const t = new Date(time);
    if (bucket === "1d") return t.toISOString().slice(0, 10);
    if (bucket === "1h") return `${t.toISOString().slice(5, 10)} ${t.toISOString().slice(11, 16)}`;
    return t.toISOString().slice(11, 16);
  }

  function draw(id, config) {
    const existing = charts[id];
    if (existing) {
      existing.data = config.data;
      existing.options = config.options;
      existing.update("none");
      return existing;
    }
    charts[id] = new Chart(document.getElementById(id), config);
    return charts[id];
  }

  const money = (v) => (v === null || v === undefined ? "–" : `$${Number(v).toFixed(v < 1 ? 6 : 2)}`);
  const count = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US"));
  const percent = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)}%`);
  const number = (v, digits = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));

  function horizontalBars(id, lines, valueOf) {
    const shown = lines.slice(0, 12);
    draw(id, {
      type: "bar",
      data: {
        labels: shown.map((l) => l.key ?? "(none)"),
        datasets: [{ label: "USD", data: shown.map(valueOf), backgroundColor: COLOURS[0] }],
      },
      options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true } } },
    });
  }

  function percentileBars(id, rows, nameOf, spreadOf) {
    draw(id, {
      type: "bar",
      data: {
        labels: rows.map(nameOf),
        datasets: ["p50", "p95", "p99"].map((p, i) => ({
          label: p,
          data: rows.map((r) => spreadOf(r)[p]),
          backgroundColor: COLOURS[i],
        })),
      },
      options: { scales: { y: { beginAtZero: true } } },
    });
  }

  async function refresh() {
    const w = chosenWindow();
    const span = { from: w.from, to: w.to };
    const [runs, success, latency, byModel, byWorkflow, byDesk, byProvider, workflows, models] = await Promise.all([
      getJSON("analytics/trends", { ...span, metric: "runs", bucket: w.bucket }),
      getJSON("analytics/trends", { ...span, metric: "success_rate", bucket: w.bucket }),
      Promise.all(["latency_p50", "latency_p95", "latency_p99"].map(
        (metric) => getJSON("analytics/trends", { ...span, metric, bucket: w.bucket }))),
      getJSON("analytics/costs", { ...span, group_by: "model" }),
      getJSON("analytics/costs", { ...span, group_by: "workflow" }),
      getJSON("analytics/costs", { ...span, group_by: "desk" }),
      getJSON("analytics/costs", { ...span, group_by: "provider" }),
      getJSON("analytics/workflows", span),
      getJSON("analytics/models", span),
    ]);

    const runTotal = workflows.workflows.reduce((sum, wf) => sum + wf.runs, 0);
    const okTotal = workflows.workflows.reduce((sum, wf) => sum + wf.successes, 0);
    document.getElementById("kpi-runs").textContent = count(runTotal);
    document.getElementById("kpi-success").textContent = runTotal ? percent(okTotal / runTotal) : "–";
    document.getElementById("kpi-calls").textContent = count(byModel.total.llm_calls);
    document.getElementById("kpi-tokens").textContent = count(byModel.total.total_tokens);
    const prompt = byModel.total.prompt_tokens;
    document.getElementById("kpi-cached").textContent = prompt ? percent(byModel.total.cached_tokens / prompt) : "–";
    document.getElementById("kpi-cache-written").textContent = count(byModel.total.cache_write_tokens);
    document.getElementById("kpi-cost").textContent = money(byModel.total.cost_usd);

    draw("chart-runs", {
      data: {
        labels: runs.points.map((p) => label(p.t, w.bucket)),
        datasets: [
          { type: "bar", label: "runs", data: runs.points.map((p) => p.value), backgroundColor: COLOURS[0], yAxisID: "y" },
          { type: "line", label: "success rate", data: success.points.map((p) => p.value), borderColor: COLOURS[2],
            backgroundColor: COLOURS[2], spanGaps: true, yAxisID: "rate" },
        ],
      },
      options: {
        scales: {
          y: { beginAtZero: true, title: { display: true, text: "runs" } },
          rate: { position: "right", min: 0, max: 1, grid: { drawOnChartArea: false },
            ticks: { callback: (v) => `${Math.round(v * 100)}%` } },
        },
      },
    });
    horizontalBars("chart-cost-model", byModel.groups, (l) => l.cost_usd);
    horizontalBars("chart-cost-workflow", byWorkflow.groups, (l) => l.cost_usd);
    horizontalBars("chart-cost-desk", byDesk.groups, (l) => l.cost_usd);
    horizontalBars("chart-cost-provider", byProvider.groups, (l) => l.cost_usd);
    percentileBars("chart-duration", workflows.workflows, (r) => r.workflow_id, (r) => r.duration_ms);
    draw("chart-latency", {
      type: "line",
      data: {
        labels: latency[0].points.map((p) => label(p.t, w.bucket)),
        datasets: latency.map((series, i) => ({
          label: ["p50", "p95", "p99"][i],
          data: series.points.map((p) => p.value),
          borderColor: COLOURS[i],
          backgroundColor: COLOURS[i],
          spanGaps: true,
        })),
      },
      options: { scales: { y: { beginAtZero: true } } },
    });

    const body = document.querySelector("#models tbody");
    body.replaceChildren(...models.models.map((m) => {
      const row = document.createElement("tr");
      for (const cell of [m.model, m.provider, count(m.llm_calls), percent(m.error_rate),
        number(m.latency_ms.p95), number(m.tokens_per_s), money(m.cost_usd)]) {
        const td = document.createElement("td");
        td.textContent = cell;
        row.append(td);
      }
      return row;
    }));
    for (const format of ["csv", "json", "parquet"]) {
      document.getElementById(`export-${format}`).href =
        `reports/export?${new URLSearchParams({ format, ...span })}`;
    }
  }

  async function tick() {
    const problem = document.getElementById("problem");
    try {
      await refresh();
      problem.hidden = true;
      document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
      document.body.dataset.ready = "true";
    } catch (error) {
      problem.textContent = `Could not load analytics: ${error.message}`;
      problem.hidden = false;
      console.error(error);
    }
    clearTimeout(timer);
    timer = setTimeout(tick, refreshMs);
  }

  document.getElementById("window").addEventListener("change", tick);
  window.pasDashboard = { charts, refresh: tick };
  tick();
})();
