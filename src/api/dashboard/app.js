// SentryPeer dashboard: reads /dashboard/api/* and draws totals, a chart, top 10 lists, a live
// feed and per-IP / per-number details. Plain JavaScript, no framework, no build step.
//
// Every value from the API may come from an attacker (user agents, numbers, methods, SIP
// messages). It enters the page only as text (textContent, createTextNode) or as an inert
// attribute (title, data-*, aria-*, SVG geometry). Never: HTML parsing of data (no HTML setters),
// an href or src from data, a URL path built from data without encodeURIComponent, the token in a
// URL. The token is kept in this tab's sessionStorage and sent only as `Authorization: Bearer`.
"use strict";

(() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const API = "/dashboard/api/";
  const FEED_POLL_MS = 2000;
  const SUMMARY_POLL_MS = 10000;
  const WINDOW_REFRESH_MS = 60000;
  const UNREACHABLE_RETRY_MS = 5000;
  const FEED_ROWS_MAX = 100;
  const TOKEN_KEY = "sentrypeer.api-token";
  const BASE_DIMENSIONS = ["ip", "number", "user_agent", "method", "transport"];
  const TRANSPORTS = ["udp", "tcp", "tls"];
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const WINDOWS = {
    "1h": { caption: "per minute, last hour (UTC)", unit: "minute" },
    "7d": { caption: "per hour, last 7 days (UTC)", unit: "hour" },
    "90d": { caption: "per day, last 90 days (UTC)", unit: "day" },
  };

  const state = {
    token: loadToken(),
    window: "1h",
    cursor: null,
    paused: false,
    enrichment: { country: false, asn: false },
    lastSeries: null,
    resizeTimer: 0,
    // Bumped to stop the loops of a previous load (a new token, a refused token).
    generation: 0,
  };

  function byId(id) {
    return document.getElementById(id);
  }

  function loadToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch {
      return "";
    }
  }

  function saveToken(token) {
    try {
      if (token) {
        sessionStorage.setItem(TOKEN_KEY, token);
      } else {
        sessionStorage.removeItem(TOKEN_KEY);
      }
    } catch {
      // Storage refused (private mode): the token stays in memory only.
    }
  }

  class ApiError extends Error {
    constructor(kind, message) {
      super(message);
      this.kind = kind;
    }
  }

  // GET /dashboard/api/<path> as JSON; throws an ApiError of kind unreachable, unauthorized or http.
  async function api(path) {
    const headers = { Accept: "application/json" };
    if (state.token) {
      headers.Authorization = "Bearer " + state.token;
    }
    let response;
    try {
      response = await fetch(API + path, {
        headers,
        cache: "no-store",
        credentials: "omit",
        redirect: "error",
      });
    } catch {
      throw new ApiError("unreachable", "The sensor's API cannot be reached (is the sensor running?).");
    }
    if (response.status === 401) {
      throw new ApiError("unauthorized", "The API asks for its token.");
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const reason = body && typeof body.error === "string" ? body.error : response.statusText;
      throw new ApiError("http", "The API answered " + response.status + ": " + reason);
    }
    if (body === null || typeof body !== "object") {
      throw new ApiError("http", "The API answered with something that is not a JSON object.");
    }
    return body;
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  // An element with an optional class and text.
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  function svg(tag, attributes) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes)) {
      node.setAttribute(name, String(value));
    }
    return node;
  }

  function num(value) {
    const n = Number(value);
    return Number.isFinite(n) && n >= 0 ? n : 0;
  }

  function count(value) {
    return num(value).toLocaleString("en-US");
  }

  function text(value) {
    return typeof value === "string" ? value : value === undefined || value === null ? "" : String(value);
  }

  // Attacker text in its own bidi isolate, so that an RTL override cannot reorder what follows.
  function isolated(value, className) {
    const node = el("bdi", className, text(value));
    node.setAttribute("title", text(value));
    return node;
  }

  function pad2(n) {
    return String(n).padStart(2, "0");
  }

  function timeLabel(iso, windowName) {
    const date = new Date(text(iso));
    if (Number.isNaN(date.getTime())) {
      return "";
    }
    const day = date.getUTCDate() + " " + MONTHS[date.getUTCMonth()];
    const clock = pad2(date.getUTCHours()) + ":" + pad2(date.getUTCMinutes());
    if (windowName === "1h") {
      return clock;
    }
    return windowName === "7d" ? day + " " + clock : day;
  }

  // ---- status, alerts, login ----

  function setStatus(message) {
    byId("status").textContent = message;
  }

  function showAlert(message) {
    const alert = byId("alert");
    alert.textContent = message;
    alert.hidden = false;
  }

  function clearAlert() {
    byId("alert").hidden = true;
  }

  function showLogin(message) {
    state.generation += 1;
    state.token = "";
    saveToken("");
    byId("main").hidden = true;
    byId("login").hidden = false;
    const error = byId("token-error");
    error.textContent = message;
    error.hidden = !message;
    setStatus("Locked");
    clearAlert();
    const detail = byId("detail");
    if (detail.open) {
      detail.close();
    }
    byId("token-input").focus();
  }

  function onTokenSubmit(event) {
    event.preventDefault();
    const input = byId("token-input");
    const value = input.value;
    const error = byId("token-error");
    // A header value carries printable ASCII only; anything else could never match.
    if (!/^[\x20-\x7e]+$/.test(value)) {
      error.textContent = "A token is printable ASCII text.";
      error.hidden = false;
      return;
    }
    input.value = "";
    error.hidden = true;
    state.token = value;
    saveToken(value);
    load();
  }

  function handleError(error, generation) {
    if (generation !== state.generation) {
      return;
    }
    if (error instanceof ApiError && error.kind === "unauthorized") {
      showLogin(state.token ? "That token was refused." : "");
      return;
    }
    if (error instanceof ApiError && error.kind === "unreachable") {
      setStatus("Offline");
      showAlert(error.message + " Retrying.");
      return;
    }
    setStatus("Error");
    showAlert(error instanceof Error ? error.message : String(error));
  }

  // ---- totals ----

  function setTotal(id, value) {
    const node = byId(id);
    node.textContent = count(value);
    node.dataset.value = String(num(value));
  }

  function showSummary(summary) {
    setTotal("total-events", summary.events);
    setTotal("total-ips", summary.ip_addresses);
    setTotal("total-numbers", summary.numbers);
    setTotal("total-verified", summary.verified_ips);
    setTotal("total-last-hour", summary.events_last_hour);
    const enrichment = summary.enrichment || {};
    state.enrichment = { country: enrichment.country === true, asn: enrichment.asn === true };
    topSection("country").hidden = !state.enrichment.country;
    topSection("asn").hidden = !state.enrichment.asn;
    const generated = new Date(text(summary.generated_at));
    const at = Number.isNaN(generated.getTime()) ? new Date() : generated;
    setStatus("Updated " + at.toISOString().slice(11, 19) + " UTC");
  }

  // ---- chart ----

  function pointTotal(point) {
    return TRANSPORTS.reduce((sum, transport) => sum + num(point[transport]), 0);
  }

  // A round axis maximum at or above `value` (1, 2 or 5 times a power of ten).
  function niceMax(value) {
    const power = Math.pow(10, Math.floor(Math.log10(Math.max(1, value))));
    for (const step of [1, 2, 5, 10]) {
      if (step * power >= value) {
        return step * power;
      }
    }
    return 10 * power;
  }

  function drawAxes(root, box, max, points, windowName) {
    for (const fraction of [0, 0.5, 1]) {
      const y = box.bottom - fraction * (box.bottom - box.top);
      root.append(svg("line", { class: "grid", x1: box.left, x2: box.right, y1: y, y2: y }));
      const label = svg("text", { class: "axis", x: box.left - 6, y: y + 4, "text-anchor": "end" });
      label.textContent = count(Math.round(max * fraction));
      root.append(label);
    }
    const slot = (box.right - box.left) / Math.max(1, points.length);
    const ticks = new Set([0, Math.floor(points.length / 3), Math.floor((2 * points.length) / 3), points.length - 1]);
    for (const index of ticks) {
      if (index < 0 || index >= points.length) {
        continue;
      }
      const x = box.left + slot * (index + 0.5);
      const anchor = index === 0 ? "start" : index === points.length - 1 ? "end" : "middle";
      const label = svg("text", { class: "axis", x, y: box.bottom + 18, "text-anchor": anchor });
      label.textContent = timeLabel(points[index].start, windowName);
      root.append(label);
    }
  }

  function drawBars(root, box, max, points, windowName) {
    const slot = (box.right - box.left) / Math.max(1, points.length);
    const width = Math.max(1, slot * 0.8);
    const scale = (box.bottom - box.top) / max;
    points.forEach((point, index) => {
      const group = svg("g", { class: "point" });
      const title = svg("title", {});
      const parts = TRANSPORTS.map((t) => t.toUpperCase() + " " + count(point[t]));
      title.textContent = timeLabel(point.start, windowName === "90d" ? "7d" : windowName) + " — " + parts.join(", ");
      group.append(title);
      let y = box.bottom;
      for (const transport of TRANSPORTS) {
        const height = num(point[transport]) * scale;
        if (height <= 0) {
          continue;
        }
        y -= height;
        const x = box.left + slot * index + (slot - width) / 2;
        group.append(svg("rect", { class: "bar-" + transport, x, y, width, height }));
      }
      root.append(group);
    });
  }

  // Drawn at the box's own width in pixels, so that labels keep their size on a phone.
  function drawChart(series, windowName) {
    state.lastSeries = { series, windowName };
    const points = Array.isArray(series.points) ? series.points.filter((p) => p && typeof p === "object") : [];
    const width = Math.max(280, Math.round(byId("chart").clientWidth || 800));
    const height = width < 600 ? 180 : 220;
    const box = { left: 48, right: width - 8, top: 12, bottom: height - 28 };
    const max = niceMax(Math.max(1, ...points.map(pointTotal)));
    const root = svg("svg", {
      class: "chart-svg",
      viewBox: "0 0 " + width + " " + height,
      role: "img",
      "aria-label": "Events per " + WINDOWS[windowName].unit + " by transport",
    });
    drawAxes(root, box, max, points, windowName);
    drawBars(root, box, max, points, windowName);
    root.append(svg("line", { class: "axis-line", x1: box.left, x2: box.right, y1: box.bottom, y2: box.bottom }));
    byId("chart").replaceChildren(root);
    byId("chart-caption").textContent = WINDOWS[windowName].caption;
  }

  function redrawChart() {
    const last = state.lastSeries;
    if (last && !byId("main").hidden) {
      drawChart(last.series, last.windowName);
    }
  }

  // ---- top 10 ----

  function topSection(dimension) {
    return document.querySelector('.top[data-dimension="' + dimension + '"]');
  }

  // A button that opens the detail view of an IP or a number.
  function detailButton(kind, key) {
    const button = el("button", "link");
    button.type = "button";
    button.dataset.detailKind = kind;
    button.dataset.detailKey = key;
    button.append(isolated(key, "key"));
    return button;
  }

  function keyNode(dimension, item) {
    const key = text(item.key);
    if (dimension === "ip") {
      return detailButton("ip", key);
    }
    if (dimension === "number" && /^\+?[0-9]+$/.test(key)) {
      return detailButton("number", key);
    }
    if (dimension === "asn" && key !== "NOT_FOUND") {
      const label = item.label ? "AS" + key + " " + text(item.label) : "AS" + key;
      return isolated(label, "key");
    }
    if (key === "NOT_FOUND" && (dimension === "country" || dimension === "asn")) {
      return el("span", "key muted", "not found");
    }
    return isolated(key, "key");
  }

  function shareBar(part, total) {
    const bar = svg("svg", { class: "share", "aria-hidden": "true" });
    const percent = total > 0 ? Math.min(100, (100 * num(part)) / total) : 0;
    bar.append(svg("rect", { width: percent.toFixed(2) + "%", height: "100%" }));
    return bar;
  }

  function drawTop(dimension, data) {
    const section = topSection(dimension);
    const list = section.querySelector("ol");
    const items = Array.isArray(data.items) ? data.items.filter((i) => i && typeof i === "object") : [];
    const total = num(data.total);
    section.querySelector(".top-total").textContent = count(total) + " events in the window";
    const rows = items.map((item) => {
      const row = el("li");
      row.append(keyNode(dimension, item), el("span", "count", count(item.count)), shareBar(item.count, total));
      return row;
    });
    if (num(data.other) > 0) {
      const row = el("li", "other");
      row.append(el("span", "key muted", "other"), el("span", "count", count(data.other)), shareBar(data.other, total));
      rows.push(row);
    }
    if (rows.length === 0) {
      rows.push(el("li", "empty muted", "No events in this window."));
    }
    list.replaceChildren(...rows);
  }

  function dimensions() {
    const list = BASE_DIMENSIONS.slice();
    if (state.enrichment.country) {
      list.push("country");
    }
    if (state.enrichment.asn) {
      list.push("asn");
    }
    return list;
  }

  async function loadWindow(generation) {
    const windowName = state.window;
    const query = "window=" + encodeURIComponent(windowName);
    const series = api("series?" + query);
    const tops = dimensions().map((d) => api("top?dimension=" + encodeURIComponent(d) + "&" + query));
    const [seriesData, ...topData] = await Promise.all([series, ...tops]);
    if (generation !== state.generation || windowName !== state.window) {
      return;
    }
    drawChart(seriesData, windowName);
    dimensions().forEach((dimension, index) => drawTop(dimension, topData[index]));
  }

  // ---- live feed ----

  function eventRow(event) {
    const row = el("tr");
    const time = el("td", "time", text(event.event_timestamp).slice(0, 19));
    const transport = el("td", "", text(event.transport_type));
    const source = el("td");
    source.append(detailButton("ip", text(event.source_ip)));
    const number = el("td");
    const called = text(event.called_number);
    number.append(/^\+?[0-9]+$/.test(called) ? detailButton("number", called) : isolated(called, "key"));
    const method = el("td");
    method.append(isolated(event.sip_method, "key"));
    const agent = el("td", "ua-cell");
    agent.append(isolated(event.sip_user_agent, "key ua"));
    row.append(time, transport, source, number, method, agent);
    return row;
  }

  function addFeedRows(events) {
    const body = byId("feed").tBodies[0];
    const rows = events.filter((e) => e && typeof e === "object").map(eventRow);
    body.prepend(...rows);
    while (body.rows.length > FEED_ROWS_MAX) {
      body.deleteRow(-1);
    }
  }

  async function pollFeed(generation) {
    const path = state.cursor ? "feed?after=" + encodeURIComponent(state.cursor) : "feed";
    const data = await api(path);
    if (generation !== state.generation) {
      return;
    }
    if (typeof data.cursor === "string" && data.cursor) {
      state.cursor = data.cursor;
    }
    addFeedRows(Array.isArray(data.events) ? data.events : []);
  }

  function setPaused(paused) {
    state.paused = paused;
    const button = byId("pause");
    button.setAttribute("aria-pressed", String(paused));
    button.textContent = paused ? "Resume" : "Pause";
    byId("feed-state").textContent = paused ? "(paused)" : "(every 2 s)";
  }

  // ---- loops ----

  async function feedLoop(generation) {
    while (generation === state.generation) {
      await sleep(FEED_POLL_MS);
      if (state.paused || generation !== state.generation) {
        continue;
      }
      try {
        await pollFeed(generation);
        clearAlert();
      } catch (error) {
        handleError(error, generation);
      }
    }
  }

  async function summaryLoop(generation) {
    let sinceWindow = 0;
    while (generation === state.generation) {
      await sleep(SUMMARY_POLL_MS);
      if (generation !== state.generation) {
        return;
      }
      try {
        showSummary(await api("summary"));
        sinceWindow += SUMMARY_POLL_MS;
        if (sinceWindow >= WINDOW_REFRESH_MS) {
          sinceWindow = 0;
          await loadWindow(generation);
        }
        clearAlert();
      } catch (error) {
        handleError(error, generation);
      }
    }
  }

  // First load: the summary (which also proves the token), then the window's chart and lists
  // and the newest events; then the polling loops.
  async function load() {
    state.generation += 1;
    const generation = state.generation;
    state.cursor = null;
    setStatus("Loading…");
    try {
      const summary = await api("summary");
      if (generation !== state.generation) {
        return;
      }
      byId("login").hidden = true;
      byId("main").hidden = false;
      byId("feed").tBodies[0].replaceChildren();
      showSummary(summary);
      await Promise.all([loadWindow(generation), pollFeed(generation)]);
      clearAlert();
    } catch (error) {
      handleError(error, generation);
      if (generation !== state.generation) {
        return;
      }
      if (error instanceof ApiError && error.kind === "unreachable") {
        setTimeout(() => generation === state.generation && load(), UNREACHABLE_RETRY_MS);
        return;
      }
      // Any other answer than 401 means the token was taken: show what there is, keep polling.
      byId("login").hidden = true;
      byId("main").hidden = false;
    }
    feedLoop(generation);
    summaryLoop(generation);
  }

  // ---- detail view ----

  function fact(list, name, value) {
    list.append(el("dt", "", name), el("dd", "", text(value)));
  }

  function detailEvent(event) {
    const item = el("li");
    const details = el("details");
    const summary = el("summary");
    summary.append(
      el("span", "time", text(event.event_timestamp).slice(0, 19) + " "),
      el("span", "", text(event.transport_type) + " "),
      isolated(event.sip_method, "key"),
      document.createTextNode(" from " + text(event.source_ip) + " to "),
      isolated(event.called_number, "key"),
      document.createTextNode(" · "),
      isolated(event.sip_user_agent, "key ua"),
    );
    details.append(summary, el("pre", "sip", text(event.sip_message)));
    item.append(details);
    return item;
  }

  function showDetail(kind, data) {
    const facts = byId("detail-facts");
    fact(facts, "First seen", data.first_seen);
    fact(facts, "Last seen", data.last_seen);
    fact(facts, "Events", count(data.count));
    if (typeof data.verified === "boolean") {
      fact(facts, "Verified", data.verified ? "yes" : "no");
    }
    if (kind === "ip" && data.source_country !== undefined) {
      fact(facts, "Country", data.source_country);
    }
    if (kind === "ip" && data.source_asn !== undefined) {
      fact(facts, "ASN", data.source_asn);
      fact(facts, "AS organisation", data.source_as_org);
    }
    const events = Array.isArray(data.events) ? data.events.filter((e) => e && typeof e === "object") : [];
    byId("detail-events").replaceChildren(...events.map(detailEvent));
  }

  async function openDetail(kind, key) {
    const dialog = byId("detail");
    const generation = state.generation;
    byId("detail-title").textContent = (kind === "ip" ? "Source IP " : "Called number ") + key;
    byId("detail-facts").replaceChildren();
    byId("detail-events").replaceChildren();
    const error = byId("detail-error");
    error.hidden = true;
    dialog.dataset.state = "loading";
    if (!dialog.open) {
      dialog.showModal();
    }
    try {
      showDetail(kind, await api(kind + "/" + encodeURIComponent(key)));
      dialog.dataset.state = "ready";
    } catch (failure) {
      dialog.dataset.state = "error";
      if (failure instanceof ApiError && failure.kind === "unauthorized") {
        handleError(failure, generation);
        return;
      }
      error.textContent = failure instanceof Error ? failure.message : String(failure);
      error.hidden = false;
    }
  }

  // ---- wiring ----

  function onClick(event) {
    const target = event.target instanceof Element ? event.target : null;
    const detail = target && target.closest("button[data-detail-kind]");
    if (detail) {
      openDetail(detail.dataset.detailKind, detail.dataset.detailKey || "");
      return;
    }
    const windowButton = target && target.closest("button[data-window]");
    if (windowButton && WINDOWS[windowButton.dataset.window]) {
      state.window = windowButton.dataset.window;
      for (const button of document.querySelectorAll("button[data-window]")) {
        button.setAttribute("aria-pressed", String(button === windowButton));
      }
      const generation = state.generation;
      loadWindow(generation).catch((error) => handleError(error, generation));
    }
  }

  function start() {
    document.addEventListener("click", onClick);
    byId("token-form").addEventListener("submit", onTokenSubmit);
    byId("pause").addEventListener("click", () => setPaused(!state.paused));
    byId("detail-close").addEventListener("click", () => byId("detail").close());
    window.addEventListener("resize", () => {
      clearTimeout(state.resizeTimer);
      state.resizeTimer = setTimeout(redrawChart, 150);
    });
    setPaused(false);
    load();
  }

  start();
})();
