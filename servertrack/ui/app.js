// ServerTrack dashboard: the fleet view (GET /fleet, one page at a time) and a server's view (its windows,
// a range, and for a node its latest snapshot), refreshed every few seconds without reloading the page.
// Every string from the API is shown with textContent, never parsed as HTML.
"use strict";

(function () {
  const REFRESH_MS = 3000;
  const PAGE_SIZE = 50;
  const TOKEN_KEY = "servertrack.token";
  const FILTER_DELAY_MS = 150;
  const DEFAULT_RANGE_SECONDS = 6 * 3600; // the range chart's span until another is picked
  const COLORS = { cpu: "#1f6feb", ram: "#c2410c", cpuBand: "rgba(31,111,235,0.15)", ramBand: "rgba(194,65,12,0.13)" };

  const $ = (id) => document.getElementById(id);
  const el = (tag, props, children) => {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (key === "text") node.textContent = value;
        else if (key === "dataset") Object.assign(node.dataset, value);
        else if (key === "className") node.className = value;
        else node.setAttribute(key, value);
      }
    }
    for (const child of children || []) node.append(child);
    return node;
  };

  // ---- the API: the token, reachability ----------------------------------------------------------------
  class Unauthorized extends Error {}
  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  const api = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    async request(method, path, body) {
      const headers = { Accept: "application/json" };
      if (this.token) headers.Authorization = "Bearer " + this.token;
      const init = { method, headers, cache: "no-store" };
      if (body !== undefined) {
        headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      }
      let response;
      try {
        response = await fetch(path, init);
      } catch (error) {
        connection.failed();
        throw error;
      }
      connection.answered();
      let answer = null;
      try { answer = await response.json(); } catch (_) { answer = null; }
      if (response.status === 401) {
        connection.unauthorized(answer && answer.error);
        throw new Unauthorized(answer && answer.error || "a token is needed");
      }
      if (!response.ok) {
        throw new ApiError(response.status, (answer && answer.error) || ("HTTP " + response.status));
      }
      return answer;
    },
    get(path) { return this.request("GET", path); },
    post(path, body) { return this.request("POST", path, body); },
  };

  const connection = {
    lastAnswer: null,
    failed() {
      const status = $("status");
      status.dataset.state = "unreachable";
      const since = this.lastAnswer ? " (last answer " + this.lastAnswer.toLocaleTimeString() + ")" : "";
      status.textContent = "service unreachable" + since;
    },
    answered() {
      this.lastAnswer = new Date();
      const status = $("status");
      if (status.dataset.state !== "unauthorized" || api.token) {
        status.dataset.state = "live";
        status.textContent = "live · " + this.lastAnswer.toLocaleTimeString();
      }
    },
    unauthorized(message) {
      const status = $("status");
      status.dataset.state = "unauthorized";
      status.textContent = api.token ? "token refused" : "token needed";
      $("token-message").textContent = message || "This service needs a token.";
      $("token-panel").hidden = false;
    },
  };

  function setUpToken() {
    $("token-button").addEventListener("click", () => { $("token-panel").hidden = !$("token-panel").hidden; });
    $("token-panel").addEventListener("submit", (event) => {
      event.preventDefault();
      api.token = $("token-input").value.trim();
      sessionStorage.setItem(TOKEN_KEY, api.token);
      $("token-input").value = "";
      $("token-panel").hidden = true;
      refresh();
    });
    $("token-forget").addEventListener("click", () => {
      api.token = "";
      sessionStorage.removeItem(TOKEN_KEY);
      $("token-panel").hidden = true;
      refresh();
    });
  }

  // ---- formatting ------------------------------------------------------------------------------------
  const percent = (value) => (value === null || value === undefined ? "–" : value.toFixed(1));
  const epochOf = (iso) => Date.parse(iso) / 1000;

  // How far this browser's clock is ahead of the service's (each /fleet answer says the service's "now"),
  // so "5 s ago" is right whatever the two clocks say.
  let clockAhead = 0;
  const serviceNow = () => Date.now() / 1000 - clockAhead;

  function ago(iso) {
    if (!iso) return "never";
    const seconds = Math.max(0, Math.round(serviceNow() - epochOf(iso)));
    if (seconds < 90) return seconds + " s ago";
    if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
    if (seconds < 129600) return Math.round(seconds / 3600) + " h ago";
    return Math.round(seconds / 86400) + " d ago";
  }

  function bytes(value) {
    if (value === null || value === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let unit = 0;
    while (Math.abs(value) >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return (unit === 0 ? value.toFixed(0) : value.toFixed(1)) + " " + units[unit];
  }

  function stateBadge(state) {
    return el("span", { className: "state", text: state, dataset: { state } });
  }

  // ---- sparklines: a canvas per row, minutes without samples are gaps ------------------------------------
  function sparkline(values, width, height, color) {
    const canvas = el("canvas", { className: "spark", width: String(width), height: String(height) });
    const points = values.filter((value) => value !== null).length;
    canvas.dataset.points = String(points);
    const context = canvas.getContext("2d");
    context.strokeStyle = color;
    context.lineWidth = 1.25;
    const step = values.length > 1 ? (width - 2) / (values.length - 1) : 0;
    const y = (value) => height - 1 - (Math.min(100, Math.max(0, value)) / 100) * (height - 2);
    context.fillStyle = color;
    let drawing = false;
    context.beginPath();
    values.forEach((value, index) => {
      const x = 1 + index * step;
      if (value === null) { drawing = false; return; }
      const previous = index > 0 ? values[index - 1] : null;
      const next = index + 1 < values.length ? values[index + 1] : null;
      if (previous === null && next === null) context.fillRect(x - 1, y(value) - 1, 2, 2); // a lone minute: a dot
      if (drawing) context.lineTo(x, y(value));
      else context.moveTo(x, y(value));
      drawing = true;
    });
    context.stroke();
    return canvas;
  }

  // ---- the fleet view -----------------------------------------------------------------------------------
  const fleet = { q: "", state: "", minCpu: "", minRam: "", sort: "cpu", order: "desc", offset: 0, generation: 0 };

  function fleetPath() {
    const query = new URLSearchParams();
    if (fleet.q) query.set("q", fleet.q);
    if (fleet.state) query.set("state", fleet.state);
    if (fleet.minCpu !== "") query.set("min_cpu", fleet.minCpu);
    if (fleet.minRam !== "") query.set("min_ram", fleet.minRam);
    query.set("sort", fleet.sort);
    query.set("order", fleet.order);
    query.set("offset", String(fleet.offset));
    query.set("limit", String(PAGE_SIZE));
    return "/fleet?" + query.toString();
  }

  async function loadFleet() {
    const generation = ++fleet.generation;
    let page;
    try {
      page = await api.get(fleetPath());
    } catch (error) {
      if (error instanceof ApiError) $("page-info").textContent = error.message;
      return;
    }
    if (generation !== fleet.generation) return; // a newer query went out meanwhile
    clockAhead = Date.now() / 1000 - epochOf(page.now);
    renderFleet(page);
  }

  function renderFleet(page) {
    const rows = page.rows.map((entry) => {
      const link = el("a", { href: "#/server/" + encodeURIComponent(entry.name), text: entry.name });
      const spark = entry.spark ? sparkline(entry.spark.cpu, 120, 22, COLORS.cpu) : el("span", { className: "note", text: "–" });
      return el("tr", { className: entry.node ? "node" : "server", dataset: { name: entry.name, state: entry.state } }, [
        el("td", { className: "name", title: entry.name }, [link]),
        el("td", {}, [stateBadge(entry.state)]),
        el("td", { title: entry.last_seen || "" , text: ago(entry.last_seen) }),
        el("td", { className: "number cpu", text: percent(entry.cpu) }),
        el("td", { className: "number ram", text: percent(entry.ram) }),
        el("td", {}, [spark]),
      ]);
    });
    $("fleet-rows").replaceChildren(...rows);
    $("fleet-empty").hidden = rows.length > 0;
    const first = page.matched ? page.offset + 1 : 0;
    const last = page.offset + page.rows.length;
    $("page-info").textContent = first + "–" + last + " of " + page.matched.toLocaleString() +
      (page.matched !== page.total ? " matching (" + page.total.toLocaleString() + " in all)" : "");
    $("page-prev").disabled = page.offset === 0;
    $("page-next").disabled = last >= page.matched;
    const states = page.states;
    $("summary").textContent = page.total.toLocaleString() + " servers and nodes · " +
      ["online", "paused", "stale", "offline"].map((state) => states[state].toLocaleString() + " " + state).join(" · ");
    for (const header of document.querySelectorAll("#fleet th[data-sort]")) {
      const sorted = header.dataset.sort === page.sort;
      if (sorted) header.setAttribute("aria-sort", page.order === "desc" ? "descending" : "ascending");
      else header.removeAttribute("aria-sort");
    }
    document.body.dataset.fleetGeneration = String(fleet.generation);
    performance.mark("fleet-rendered"); // bench/dashboard.py reads these marks
  }

  function setUpFleet() {
    let timer = null;
    const changed = () => {
      performance.mark("filter-input");
      fleet.q = $("filter-name").value.trim().toLowerCase();
      fleet.state = $("filter-state").value;
      fleet.minCpu = $("filter-cpu").value;
      fleet.minRam = $("filter-ram").value;
      fleet.offset = 0;
      clearTimeout(timer);
      timer = setTimeout(loadFleet, FILTER_DELAY_MS);
    };
    for (const id of ["filter-name", "filter-cpu", "filter-ram"]) $(id).addEventListener("input", changed);
    $("filter-state").addEventListener("change", changed);
    $("filters").addEventListener("submit", (event) => { event.preventDefault(); changed(); });
    for (const header of document.querySelectorAll("#fleet th[data-sort]")) {
      header.addEventListener("click", () => {
        const key = header.dataset.sort;
        if (fleet.sort === key) fleet.order = fleet.order === "desc" ? "asc" : "desc";
        else { fleet.sort = key; fleet.order = key === "name" ? "asc" : "desc"; }
        fleet.offset = 0;
        loadFleet();
      });
    }
    $("page-prev").addEventListener("click", () => { fleet.offset = Math.max(0, fleet.offset - PAGE_SIZE); loadFleet(); });
    $("page-next").addEventListener("click", () => { fleet.offset += PAGE_SIZE; loadFleet(); });
  }

  // ---- charts: the average as a line, min..max as a band, empty buckets as gaps -------------------------
  function chartData(buckets) {
    const columns = [[], [], [], [], [], [], []];
    for (const bucket of buckets) {
      columns[0].push(epochOf(bucket.start));
      const cpu = bucket.cpu, ram = bucket.ram;
      columns[1].push(cpu ? cpu.avg : null);
      columns[2].push(cpu ? cpu.min : null);
      columns[3].push(cpu ? cpu.max : null);
      columns[4].push(ram ? ram.avg : null);
      columns[5].push(ram ? ram.min : null);
      columns[6].push(ram ? ram.max : null);
    }
    return columns;
  }

  function chartOptions(width) {
    const edge = { width: 0, points: { show: false } };
    return {
      width, height: 220,
      scales: { x: { time: true }, y: { range: [0, 100] } },
      axes: [{}, { values: (_, ticks) => ticks.map((tick) => tick + "%") }],
      series: [
        {},
        { label: "cpu avg", stroke: COLORS.cpu, width: 1.5, spanGaps: false },
        { label: "cpu min", stroke: COLORS.cpu, ...edge },
        { label: "cpu max", stroke: COLORS.cpu, ...edge },
        { label: "ram avg", stroke: COLORS.ram, width: 1.5, spanGaps: false },
        { label: "ram min", stroke: COLORS.ram, ...edge },
        { label: "ram max", stroke: COLORS.ram, ...edge },
      ],
      bands: [{ series: [3, 2], fill: COLORS.cpuBand }, { series: [6, 5], fill: COLORS.ramBand }],
      legend: { live: true },
    };
  }

  const charts = new Map(); // container id -> uPlot

  function drawChart(id, buckets) {
    const container = $(id);
    const data = chartData(buckets);
    container.dataset.points = String(data[1].filter((value) => value !== null).length);
    container.dataset.buckets = String(buckets.length);
    let chart = charts.get(id);
    if (chart) {
      chart.setData(data);
      return;
    }
    container.replaceChildren();
    chart = new uPlot(chartOptions(Math.max(320, container.clientWidth)), data, container);
    charts.set(id, chart);
  }

  function dropCharts() {
    for (const chart of charts.values()) chart.destroy();
    charts.clear();
  }

  window.addEventListener("resize", () => {
    for (const [id, chart] of charts) chart.setSize({ width: Math.max(320, $(id).clientWidth), height: 220 });
  });

  // ---- the server view ----------------------------------------------------------------------------------
  const server = { name: null, range: null };

  async function loadServer() {
    const name = server.name;
    // What the fleet knows of it first: whether it has loads, whether it is a node, its state.
    const found = await api.get("/fleet?" + new URLSearchParams({ name }).toString());
    if (name !== server.name) return;
    clockAhead = Date.now() / 1000 - epochOf(found.now);
    const entry = found.rows[0];
    $("server-missing").hidden = entry !== undefined && entry.spark !== null;
    $("server-missing").textContent = entry === undefined ? "No server or node has this name." : "No load samples from it yet.";
    if (entry === undefined) return;
    $("server-state").replaceChildren(stateBadge(entry.state));
    $("server-state").dataset.state = entry.state;
    $("server-seen").textContent = "last seen " + ago(entry.last_seen) + (entry.last_seen ? " (" + entry.last_seen + ")" : "");
    if (entry.spark !== null) { // it has loads
      const loads = await api.get("/servers/" + encodeURIComponent(name) + "/loads");
      if (name !== server.name) return;
      drawChart("chart-minutes", loads.minutes);
      drawChart("chart-hours", loads.hours);
      if (server.range) await loadRange();
    }
    if (entry.node) await loadNode(name);
    else $("node-section").hidden = true;
  }

  async function loadRange() {
    if (server.range.sliding) { // "last N": the window moves on with every refresh
      const now = serviceNow();
      server.range = { from: now - (server.range.to - server.range.from), to: now, sliding: true };
    }
    const { from, to } = server.range;
    const name = server.name;
    const query = new URLSearchParams({ from: String(Math.floor(from)), to: String(Math.floor(to)) });
    try {
      const answer = await api.get("/servers/" + encodeURIComponent(name) + "/loads?" + query.toString());
      if (name !== server.name) return;
      $("range-note").textContent = answer.from + " to " + answer.to + ", one bucket per " + answer.step +
        (answer.kept_from ? " (history kept from " + answer.kept_from + ")" : "");
      drawChart("chart-range", answer.buckets);
    } catch (error) {
      if (error instanceof ApiError) $("range-note").textContent = error.message;
    }
  }

  function localInputValue(epoch) {
    const date = new Date(epoch * 1000 - new Date(epoch * 1000).getTimezoneOffset() * 60000);
    return date.toISOString().slice(0, 16);
  }

  function setUpRange() {
    for (const button of document.querySelectorAll("#range-form button[data-range]")) {
      button.addEventListener("click", () => {
        const to = serviceNow();
        server.range = { from: to - Number(button.dataset.range), to, sliding: true };
        $("range-from").value = localInputValue(server.range.from);
        $("range-to").value = "";
        loadRange();
      });
    }
    $("range-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const from = Date.parse($("range-from").value) / 1000;
      const to = $("range-to").value ? Date.parse($("range-to").value) / 1000 : serviceNow();
      if (!Number.isFinite(from) || !Number.isFinite(to) || from >= to) {
        $("range-note").textContent = "choose a start before the end";
        return;
      }
      server.range = { from, to, sliding: false };
      loadRange();
    });
  }

  function meter(label, value, kind) {
    const fill = el("div", { className: "fill" });
    fill.style.width = Math.min(100, Math.max(0, value || 0)) + "%";
    return el("div", { className: "meter " + (kind || "") }, [
      el("span", { className: "label", text: label }),
      el("div", { className: "track" }, [fill]),
      el("span", { className: "value", text: percent(value) + "%" }),
    ]);
  }

  function table(headers, rows) {
    return el("table", {}, [
      el("thead", {}, [el("tr", {}, headers.map(([text, numeric]) => el("th", { text, className: numeric ? "number" : "" })))]),
      el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((cell, index) =>
        el("td", { text: cell, className: headers[index][1] ? "number" : "" }))))),
    ]);
  }

  async function loadNode(name) {
    const base = "/nodes/" + encodeURIComponent(name);
    const detail = await api.get(base);
    if (name !== server.name) return;
    $("node-section").hidden = false;
    $("node-host").textContent = [detail.hostname, detail.os, detail.ips && detail.ips.join(", ")].filter(Boolean).join(" · ");
    $("node-pause").disabled = detail.paused === true;
    $("node-resume").disabled = detail.paused !== true;
    $("node-stats-at").textContent = detail.stats_at ? "latest stats " + ago(detail.stats_at) : "no stats snapshot yet";
    if (!detail.stats_at) return;
    const sections = await Promise.all(["cpu", "memory", "disks", "network", "processes"].map((section) =>
      api.get(base + "/" + section).catch(() => null)));
    if (name !== server.name) return;
    const [cpu, memory, disks, network, processes] = sections;
    if (cpu) {
      $("node-cpu").replaceChildren(meter("all", cpu.percent),
        ...(cpu.per_cpu || []).map((value, index) => meter("cpu" + index, value)));
    }
    if (memory) {
      $("node-memory").replaceChildren(
        meter("memory", memory.memory && memory.memory.percent, "memory"),
        el("p", { className: "note", text: bytes(memory.memory && memory.memory.used) + " used of " + bytes(memory.memory && memory.memory.total) }),
        meter("swap", memory.swap && memory.swap.percent, "memory"),
        el("p", { className: "note", text: bytes(memory.swap && memory.swap.used) + " used of " + bytes(memory.swap && memory.swap.total) }));
    }
    if (disks) {
      $("node-disks").replaceChildren(table([["mount"], ["used", true], ["size", true], ["%", true]],
        (disks.disks || []).map((disk) => [disk.mountpoint, bytes(disk.used), bytes(disk.total), percent(disk.percent)])));
    }
    if (network) {
      $("node-network").replaceChildren(table([["interface"], ["rx/s", true], ["tx/s", true], ["errors", true]],
        (network.network || []).map((nic) => [nic.interface, bytes(nic.rx_bytes_per_s), bytes(nic.tx_bytes_per_s),
          String((nic.rx_errors || 0) + (nic.tx_errors || 0))])));
    }
    if (processes) {
      $("node-processes").replaceChildren(table([["pid", true], ["name"], ["user"], ["cpu %", true], ["rss", true], ["command"]],
        (processes.top_cpu || []).slice(0, 15).map((process) => [String(process.pid), process.name, process.user || "",
          percent(process.cpu_percent), bytes(process.rss), (process.cmdline || "").slice(0, 120)])));
    }
  }

  async function control(action) {
    const name = server.name;
    $("control-result").textContent = action === "pause" ? "pausing…" : "resuming…";
    try {
      const answer = await api.post("/nodes/" + encodeURIComponent(name) + "/" + action, {});
      $("control-result").textContent = action === "pause" ? "paused" : "resumed";
      $("node-pause").disabled = answer.paused === true;
      $("node-resume").disabled = answer.paused !== true;
    } catch (error) {
      $("control-result").textContent = error instanceof Unauthorized ? "needs the write token" : String(error.message);
    }
  }

  // ---- routing and refresh ------------------------------------------------------------------------------
  function route() {
    const hash = location.hash || "#/";
    const match = hash.match(/^#\/server\/(.+)$/);
    dropCharts();
    if (match) {
      server.name = decodeURIComponent(match[1]);
      const to = serviceNow();
      server.range = { from: to - DEFAULT_RANGE_SECONDS, to, sliding: true };
      $("range-from").value = localInputValue(server.range.from);
      $("range-to").value = "";
      $("fleet-view").hidden = true;
      $("server-view").hidden = false;
      $("server-name").textContent = server.name;
      $("server-state").replaceChildren();
      $("server-seen").textContent = "";
      $("range-note").textContent = "";
      $("control-result").textContent = "";
      for (const id of ["chart-minutes", "chart-hours", "chart-range", "node-cpu", "node-memory", "node-disks", "node-network", "node-processes"]) {
        $(id).replaceChildren();
        delete $(id).dataset.points;
      }
      $("node-section").hidden = true;
      document.title = server.name + " · ServerTrack";
    } else {
      server.name = null;
      $("server-view").hidden = true;
      $("fleet-view").hidden = false;
      document.title = "ServerTrack";
    }
    refresh();
  }

  let refreshing = false;
  let again = false; // asked for while one was running (a route change): run once more after it
  async function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      do {
        again = false;
        if (server.name !== null) await loadServer();
        else await loadFleet();
      } while (again);
    } catch (_) {
      // shown by the status line
    } finally {
      refreshing = false;
    }
  }

  function start() {
    setUpToken();
    setUpFleet();
    setUpRange();
    $("node-pause").addEventListener("click", () => control("pause"));
    $("node-resume").addEventListener("click", () => control("resume"));
    window.addEventListener("hashchange", route);
    setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
    route();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
