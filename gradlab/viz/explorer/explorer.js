// gradlab explorer: the regime map of a sweep, every run one click away.
// Reads GRADLAB (the payload of gradlab/viz/explorer/payload.py, inlined by page.py) and
// draws with plotly.js (explorer/plotly.min.js beside index.html). Trajectories load
// lazily from explorer/traj/chunk-*.js, one script per chunk of the sweep.
"use strict";

(function () {
  const G = window.GRADLAB;
  const LOSS_SCALE = [[0, "#ffffcc"], [0.25, "#fed976"], [0.5, "#fd8d3c"], [0.75, "#e31a1c"],
                      [1, "#800026"]];
  const MAGMA = [[0, "#000004"], [0.25, "#51127c"], [0.5, "#b73779"], [0.75, "#fc8961"],
                 [1, "#fcfdbf"]];  // matplotlib's magma, as on dashboard.png
  const MAX_TICKS = 10;
  const MAX_COLUMNS = 4;
  const state = {quantity: G.quantities.length ? G.quantities[0].key : "regime",
                 selected: null, cellIndex: []};
  const trajectories = {};  // script name -> {run_id: curves}
  const pending = {};       // script src -> promise

  window.gradlabTrajectories = function (name, runs) { trajectories[name] = runs; };

  function $(id) { return document.getElementById(id); }
  function fmt(v) {
    if (v === null || v === undefined || v === "") return "-";
    if (typeof v !== "number") return String(v);
    if (v === 0) return "0";
    const a = Math.abs(v);
    return (a >= 1e-2 && a < 1e4) ? String(Number(v.toPrecision(4))) : v.toExponential(2);
  }
  function runValue(col, i) { const c = G.runs[col]; return c ? c[i] : undefined; }

  // ------------------------------------------------------------------ the map
  function quantityInfo() { return G.quantities.find(q => q.key === state.quantity); }

  function panelGrid() {
    const n = G.panels.length;
    const cols = Math.min(MAX_COLUMNS, n);
    return {cols: cols, rows: Math.ceil(n / cols)};
  }

  function ticks(labels) {
    const step = Math.max(1, Math.ceil(labels.length / MAX_TICKS));
    const vals = [], text = [];
    for (let i = 0; i < labels.length; i += step) { vals.push(i); text.push(labels[i]); }
    return {tickvals: vals, ticktext: text};
  }

  function numericRange(q) {
    let lo = Infinity, hi = -Infinity;
    for (const p of G.panels) for (const v of p.values[q.key]) {
      if (typeof v !== "number") continue;
      const z = q.kind === "log" ? (v > 0 ? Math.log10(v) : null) : v;
      if (z === null) continue;
      lo = Math.min(lo, z); hi = Math.max(hi, z);
    }
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    if (lo === hi) { hi = lo + 1; }
    return [lo, hi];
  }

  function cellText(panel, k) {
    const runs = panel.runs[k];
    const i = runs[0];
    const lines = G.axes.map(a => `${a} = ${G.axis_labels[a][i]}`);
    const regimes = runs.map(r => runValue("regime", r));
    lines.push(`<b>regime: ${regimes.join(", ")}</b>` + (runs.length > 1 ? ` (${runs.length} runs)` : ""));
    const show = [["predicted_regime", "predicted"], ["initial_loss", "initial loss"],
                  ["final_loss", "final loss"], ["test_accuracy", "test accuracy"],
                  ["initial_grad_norm", "grad norm at init"], ["max_grad_norm", "max grad norm"],
                  ["grad_ratio", "max / baseline"], ["explosion_step", "explosion step"],
                  ["explosion_layer", "explosion layer"], ["first_nonfinite_step", "first non-finite step"]];
    for (const [col, label] of show) {
      const v = runValue(col, i);
      if (v === undefined || v === null || v === "") continue;
      lines.push(`${label}: ${fmt(v)}`);
    }
    return lines.join("<br>");
  }

  function buildTraces() {
    const q = quantityInfo();
    const nx = G.x.labels.length, ny = G.y ? G.y.labels.length : 1;
    const traces = [];
    const range = q && q.kind !== "categorical" ? numericRange(q) : null;
    state.cellIndex = [];
    G.panels.forEach((panel, p) => {
      const axis = p === 0 ? "" : String(p + 1);
      const z = [], text = [], nonfinite = [], lookup = {};
      for (let y = 0; y < ny; y++) {
        z.push(new Array(nx).fill(null)); text.push(new Array(nx).fill(""));
        nonfinite.push(new Array(nx).fill(null));
      }
      const marks = {x: [], y: []};
      panel.ix.forEach((x, k) => {
        const y = panel.iy[k];
        lookup[`${x},${y}`] = k;
        let v = q ? panel.values[q.key][k] : null;
        if (v === "nonfinite") { nonfinite[y][x] = 1; v = null; }
        else if (q && q.kind === "log" && typeof v === "number") v = v > 0 ? Math.log10(v) : null;
        z[y][x] = v;
        text[y][x] = cellText(panel, k);
        const labels = new Set(panel.runs[k].map(r => runValue("regime", r)));
        if (state.quantity === "regime" && labels.size > 1) { marks.x.push(x); marks.y.push(y); }
      });
      state.cellIndex.push(lookup);
      const common = {xaxis: "x" + axis, yaxis: "y" + axis, hoverinfo: "text", text: text,
                      meta: p, xgap: 1, ygap: 1, hoverlabel: {align: "left"}};
      if (!q || q.kind === "categorical") {
        const n = G.regimes.length;
        const scale = [];
        G.regime_colors.forEach((c, i) => { scale.push([i / n, c]); scale.push([(i + 1) / n, c]); });
        traces.push(Object.assign({type: "heatmap", z: z, zmin: -0.5, zmax: n - 0.5,
                                   colorscale: scale, showscale: false}, common));
      } else {
        traces.push(Object.assign({type: "heatmap", z: z, zmin: range[0], zmax: range[1],
                                   colorscale: q.kind === "log" ? LOSS_SCALE : "Viridis",
                                   showscale: p === 0,
                                   colorbar: {title: {text: q.label + (q.kind === "log" ? " (log10)" : ""),
                                                      side: "right"}, len: 0.8}}, common));
        if (nonfinite.some(row => row.some(v => v !== null))) {
          traces.push(Object.assign({type: "heatmap", z: nonfinite, zmin: 0, zmax: 1,
                                     colorscale: [[0, "black"], [1, "black"]], showscale: false},
                                    common));
        }
      }
      if (marks.x.length) {
        traces.push({type: "scatter", mode: "markers", x: marks.x, y: marks.y, hoverinfo: "skip",
                     xaxis: "x" + axis, yaxis: "y" + axis, showlegend: false,
                     marker: {color: "white", size: 6, line: {color: "black", width: 1}}});
      }
      for (const line of panel.lines) {
        const t = {type: "scatter", mode: "lines", name: line.label, hoverinfo: "name",
                   line: {color: line.color, width: 2.5, dash: line.dash},
                   xaxis: "x" + axis, yaxis: "y" + axis, showlegend: p === 0, legendgroup: line.label};
        if (line.vertical) {
          line.vertical.forEach((v, j) => traces.push(Object.assign({}, t, {
            x: [v, v], y: [-0.5, ny - 0.5], showlegend: p === 0 && j === 0})));
        } else if (line.horizontal) {
          line.horizontal.forEach((v, j) => traces.push(Object.assign({}, t, {
            x: [-0.5, nx - 0.5], y: [v, v], showlegend: p === 0 && j === 0})));
        } else {
          traces.push(Object.assign(t, {x: line.x, y: line.y}));
        }
      }
    });
    return traces;
  }

  function buildLayout() {
    const {cols, rows} = panelGrid();
    const nx = G.x.labels.length, ny = G.y ? G.y.labels.length : 1;
    const cellPx = Math.max(14, Math.min(44, Math.floor(900 / (cols * nx))));
    const panelW = nx * cellPx, panelH = G.y ? Math.max(ny * cellPx, 120) : 60;
    const layout = {grid: {rows: rows, columns: cols, pattern: "independent",
                           xgap: 0.12, ygap: G.panels.length > cols ? 0.35 : 0.1},
                    width: cols * (panelW + 90) + 220, height: rows * (panelH + 150) + 40,
                    margin: {l: 90, r: 30, t: 40, b: 60}, showlegend: true,
                    legend: {x: 1.02, y: 1}, annotations: [], hovermode: "closest"};
    G.panels.forEach((panel, p) => {
      const s = p === 0 ? "" : String(p + 1);
      layout["xaxis" + s] = Object.assign({range: [-0.5, nx - 0.5], title: {text: G.x.name},
                                           tickangle: nx > 5 ? -45 : 0, showgrid: false,
                                           zeroline: false}, ticks(G.x.labels));
      layout["yaxis" + s] = G.y
        ? Object.assign({range: [-0.5, ny - 0.5], showgrid: false, zeroline: false,
                         title: {text: p % cols === 0 ? G.y.name : ""}}, ticks(G.y.labels))
        : {range: [-0.5, 0.5], showticklabels: false, showgrid: false, zeroline: false};
      if (G.panels.length > 1 || panel.title !== "all") {
        layout.annotations.push({text: panel.title.split(", ").join("<br>"), showarrow: false,
                                 xref: "x" + s + " domain", yref: "y" + s + " domain",
                                 x: 0.5, y: 1.02, xanchor: "center", yanchor: "bottom",
                                 font: {size: 12}});
      }
    });
    layout.shapes = selectedShape();
    return layout;
  }

  function selectedShape() {
    if (!state.selected) return [];
    const p = state.selected.panel, k = state.selected.cell, s = p === 0 ? "" : String(p + 1);
    const x = G.panels[p].ix[k], y = G.panels[p].iy[k];
    return [{type: "rect", xref: "x" + s, yref: "y" + s, x0: x - 0.5, x1: x + 0.5,
             y0: y - 0.5, y1: y + 0.5, line: {color: "black", width: 3}}];
  }

  function drawLegend() {
    const q = quantityInfo();
    const box = $("legend");
    box.innerHTML = "";
    if (q && q.kind !== "categorical") {
      box.textContent = q.kind === "log" ? "colour: log10 of the cell's median; black: non-finite (diverged)"
                                         : "colour: the cell's median";
      return;
    }
    G.regimes.forEach((r, i) => {
      const item = document.createElement("span");
      item.className = "swatch";
      item.innerHTML = `<i style="background:${G.regime_colors[i]}"></i>${r}`;
      box.appendChild(item);
    });
    const dot = document.createElement("span");
    dot.className = "swatch";
    dot.innerHTML = "<i class='dot'></i>runs of the cell disagree";
    box.appendChild(dot);
  }

  function drawMap() {
    Plotly.react("map", buildTraces(), buildLayout(), {displaylogo: false, responsive: false});
    drawLegend();
  }

  // ------------------------------------------------------------------ one cell
  function loadScript(src) {
    if (!pending[src]) {
      pending[src] = new Promise((resolve, reject) => {
        const s = document.createElement("script");
        s.src = src;
        s.onload = resolve;
        s.onerror = () => reject(new Error(`could not load ${src}`));
        document.head.appendChild(s);
      });
    }
    return pending[src];
  }

  function curvesOf(run) {
    const src = runValue("trajectory", run);
    if (!src) return Promise.resolve(null);
    const name = src.split("/").pop();
    return loadScript(src).then(() => (trajectories[name] || {})[String(runValue("run_id", run))] || null);
  }

  function plotInto(id, title, traces, layout) {
    const div = document.createElement("div");
    div.id = id;
    div.className = "plot";
    $("plots").appendChild(div);
    Plotly.newPlot(div, traces, Object.assign({title: {text: title, font: {size: 13}, x: 0.02,
                                                       xanchor: "left"},
                                               width: 440, height: 300,
                                               margin: {l: 60, r: 20, t: 40, b: 45}}, layout),
                   {displaylogo: false, displayModeBar: false});
  }

  function stepOf(c, key) { return c.step || c[key].map((_, i) => i); }

  function showCell(p, k) {
    const panel = G.panels[p];
    const runs = panel.runs[k];
    state.selected = {panel: p, cell: k};
    Plotly.relayout("map", {shapes: selectedShape()});  // outline the clicked cell
    const head = $("cell");
    const i = runs[0];
    head.innerHTML = `<h3>${G.axes.map(a => `${a} = ${G.axis_labels[a][i]}`).join(", ")}</h3>`;
    const cols = Object.keys(G.runs).filter(c => c !== "trajectory");
    let table = "<table class='runs'><tr>" + cols.map(c => `<th>${c}</th>`).join("") + "</tr>";
    for (const r of runs) table += "<tr>" + cols.map(c => `<td>${fmt(G.runs[c][r])}</td>`).join("") + "</tr>";
    head.innerHTML += table + "</table>";
    $("plots").innerHTML = "<p class='note'>loading curves...</p>";
    const t0 = performance.now();
    Promise.all(runs.map(curvesOf)).then(curves => {
      drawRun(runs, curves);
      window.gradlabExplorer.lastCellMs = performance.now() - t0;  // click to curves drawn
    })
      .catch(e => { $("plots").innerHTML = `<p class='error'>${e.message}</p>`; });
  }

  function drawRun(runs, curves) {
    const box = $("plots");
    box.innerHTML = "";
    const have = curves.map((c, j) => [c, runs[j]]).filter(([c]) => c);
    if (!have.length) {
      box.innerHTML = "<p class='note'>No trajectory for these runs (sweep.keep_trajectories=False, " +
                      "or the trajectories file is missing).</p>";
      return;
    }
    const name = r => `run ${runValue("run_id", r)}` + (runValue("seed", r) !== undefined ? ` (seed ${runValue("seed", r)})` : "");
    const logY = {yaxis: {type: "log"}, xaxis: {title: {text: "step"}}};
    plotInto("loss", "loss", have.map(([c, r]) => ({x: stepOf(c, "loss"), y: c.loss, name: name(r),
                                                    mode: "lines"})), logY);
    const gn = have.map(([c, r]) => ({x: stepOf(c, "grad_norm"), y: c.grad_norm, name: name(r), mode: "lines"}));
    for (const [, r] of have) {
      const s = runValue("explosion_step", r);
      if (typeof s === "number") gn.push({x: [s, s], y: [Math.min(...have[0][0].grad_norm.filter(v => v > 0)),
                                                         Math.max(...have[0][0].grad_norm.filter(v => v > 0))],
                                           mode: "lines", line: {dash: "dot", color: "red"},
                                           name: `explosion step ${s}`});
    }
    plotInto("gradnorm", "gradient norm", gn, logY);
    const [c, r] = have[0];
    const layers = c.layer_names || [];
    if (c.grad_norm_by_layer && layers.length) {
      const z = layers.map((_, l) => c.grad_norm_by_layer.map(row => row[l] > 0 ? Math.log10(row[l]) : null));
      plotInto("layers", `gradient norm per layer, log10 (${name(r)})`,
               [{type: "heatmap", x: stepOf(c, "grad_norm_by_layer"), y: layers, z: z, colorscale: MAGMA}],
               {xaxis: {title: {text: "step"}}, margin: {l: 90, r: 20, t: 40, b: 45}});
    }
    if (c.update_ratio_by_layer && layers.length) {
      plotInto("updates", `update ratio ||dW||/||W|| per layer (${name(r)})`,
               layers.map((lay, l) => ({x: stepOf(c, "update_ratio_by_layer"),
                                        y: c.update_ratio_by_layer.map(row => row[l]), name: lay,
                                        mode: "lines"})), logY);
    }
    if (c.sharpness && c.sharpness.length) {
      const t = [{x: c.sharpness_step, y: c.sharpness, name: "sharpness", mode: "lines+markers"}];
      const th = runValue("sharpness_threshold", r);
      if (typeof th === "number") t.push({x: [c.sharpness_step[0], c.sharpness_step[c.sharpness_step.length - 1]],
                                          y: [th, th], name: `threshold ${fmt(th)}`, mode: "lines",
                                          line: {dash: "dash", color: "red"}});
      plotInto("sharpness", "sharpness against its threshold", t, {xaxis: {title: {text: "step"}}});
    }
    for (const key of Object.keys(c).filter(k => k.startsWith("probe_"))) {
      const v = c[key];
      if (!Array.isArray(v) || !v.length || Array.isArray(v[0])) continue;
      plotInto(key, `model probe ${key}`, have.map(([cc, rr]) => ({y: cc[key], name: name(rr), mode: "lines"})),
               {yaxis: {type: "log"}, xaxis: {title: {text: "index (time step or layer)"}}});
    }
  }

  // ------------------------------------------------------------------ start
  function start() {
    const select = $("quantity");
    for (const q of G.quantities) {
      const o = document.createElement("option");
      o.value = q.key; o.textContent = q.label;
      select.appendChild(o);
    }
    select.value = state.quantity;
    select.onchange = () => { state.quantity = select.value; drawMap(); };
    drawMap();
    $("map").on("plotly_click", ev => {
      const pt = ev.points.find(q => typeof q.data.meta === "number");
      if (!pt) return;
      const k = state.cellIndex[pt.data.meta][`${pt.x},${pt.y}`];
      if (k !== undefined) showCell(pt.data.meta, k);
    });
    if (G.partial) setTimeout(() => { if (!state.selected) location.reload(); }, 15000);
    window.gradlabExplorer.readyMs = performance.now();  // the map is drawn
  }

  // For tests and scripts: how many cells the map holds, and where one is on the page.
  window.gradlabExplorer = {
    cellCount: () => G.panels.reduce((n, p) => n + p.ix.length, 0),
    runCount: () => G.n_runs,
    cellCenter: function (p, ix, iy) {
      const gd = $("map"), s = p === 0 ? "" : String(p + 1);
      const xa = gd._fullLayout["xaxis" + s], ya = gd._fullLayout["yaxis" + s];
      const box = gd.getBoundingClientRect();
      return {x: box.left + xa._offset + xa.l2p(ix), y: box.top + ya._offset + ya.l2p(iy)};
    },
    showCell: showCell,
  };

  if (typeof Plotly === "undefined") {
    $("map").innerHTML = "<p class='error'>plotly.js did not load: explorer/plotly.min.js must sit " +
                         "beside index.html (python -m experiments.plot --workdir=... rewrites it).</p>";
  } else {
    start();
  }
})();
