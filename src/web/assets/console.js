// The console page: polls the state, streams the log, sends buttons and settings.
"use strict";
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const $ = (id) => document.getElementById(id);
let phase = "stopped";
// Channel names Discord gave the bot, for answers that mention a channel as <#id>.
let channelNames = {};
const named = (text) => text.replace(/<#(\d+)>/g, (whole, id) => channelNames[id] || "channel " + id);

async function send(path, body) {
  const options = { method: "POST", headers: { "x-csrf-token": csrf } };
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  try {
    const response = await fetch(path, options);
    const text = await response.text();
    let message = text;
    try { message = JSON.parse(text).message; } catch (_) { /* plain text */ }
    $("notice").textContent = named(String(message));
    refresh();
    return response.ok;
  } catch (e) {
    $("notice").textContent = "The console did not answer: " + e;
    return false;
  }
}

$("start").onclick = () => send("/api/bot/start");
$("stop").onclick = () => send("/api/bot/stop");
$("restart").onclick = () => send("/api/bot/restart");
$("force-stop").onclick = () => {
  if (confirm("Force stop kills the bot at once: replies in progress are lost. Kill it?")) send("/api/bot/force-stop");
};
document.querySelectorAll("[data-action]").forEach((b) => { b.onclick = () => send("/api/actions/" + b.dataset.action); });

// Sliders apply when let go (or after arrow keys pause), and are not overwritten meanwhile.
const editing = new Set();
const shown = { reply_rate: (v) => Math.round(v * 100) + " %", temperature: (v) => Number(v).toFixed(2), max_tokens: (v) => v + " tokens" };
document.querySelectorAll("input[data-setting]").forEach((input) => {
  const key = input.dataset.setting;
  let timer;
  input.addEventListener("input", () => { editing.add(key); $(key + "-value").textContent = shown[key](input.value); });
  input.addEventListener("change", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => { await send("/api/settings", { key, value: input.value }); editing.delete(key); }, 250);
  });
});
$("mentions_only").onchange = (e) => send("/api/settings", { key: "mentions_only", value: e.target.checked ? "on" : "off" });
$("allow-form").onsubmit = (e) => {
  e.preventDefault();
  const id = $("allow-id").value.trim();
  if (id) send("/api/settings", { key: "allow", value: id }).then((ok) => { if (ok) $("allow-id").value = ""; });
};

const ago = (s) => s == null ? "–" : s < 60 ? s + " s" : s < 3600 ? Math.floor(s / 60) + " min" : s < 86400 ? Math.floor(s / 3600) + " h " + Math.floor(s % 3600 / 60) + " min" : Math.floor(s / 86400) + " d " + Math.floor(s % 86400 / 3600) + " h";
const ms = (v) => v == null ? "–" : (v / 1000).toFixed(2) + " s";

function render(state) {
  const bot = state.bot;
  phase = bot.phase;
  const words = { stopped: "Stopped", starting: "Starting", running: "Running", stopping: "Stopping", error: "Error" };
  const foreign = !bot.service && !bot.started_here && phase !== "stopped" && phase !== "error";
  $("phase").textContent = words[phase] + (foreign ? " (not started here)" : "");
  $("run-by").textContent = bot.service ? "systemd (" + bot.service + ")" : bot.started_here ? "this console" : foreign ? "found running (started elsewhere)" : "–";
  $("phase").className = "pill " + phase;
  const live = phase === "running" || phase === "starting";
  $("start").disabled = live || phase === "stopping";
  $("stop").disabled = !live;
  $("restart").disabled = phase !== "running";
  $("force-stop").disabled = phase === "stopped" || phase === "error";
  const banners = $("banners");
  if (banners.children.length !== bot.banners.length || [...banners.querySelectorAll(".banner span")].some((s, i) => s.textContent !== bot.banners[i])) {
    banners.innerHTML = "";
    bot.banners.forEach((text) => {
      const div = document.createElement("div");
      div.className = "banner";
      const span = document.createElement("span");
      span.textContent = text;
      const dismiss = document.createElement("button");
      dismiss.className = "link"; dismiss.textContent = "Dismiss"; dismiss.type = "button";
      dismiss.onclick = () => send("/api/banners/clear");
      div.append(span, " ", dismiss);
      banners.append(div);
    });
  }
  $("memory").textContent = bot.memory_mb == null ? "–" : bot.memory_mb.toFixed(0) + " MB";
  $("last-exit").textContent = bot.last_exit || "–";
  const d = bot.dashboard;
  document.querySelectorAll("input[data-setting], #mentions_only").forEach((i) => { i.disabled = !d; });
  if (d) {
    const s = d.status;
    $("uptime").textContent = ago(s.uptime_seconds);
    $("model").textContent = s.model || "loading…";
    $("adapter").textContent = s.adapter || "none (base model)";
    $("last-reply").textContent = s.last_reply_seconds_ago == null ? "none yet" : ago(s.last_reply_seconds_ago) + " ago";
    $("queue").textContent = s.waiting + " waiting, " + s.replying + " replying, " + s.channels + " channels open";
    $("discord").textContent = d.discord;
    const set = d.settings;
    for (const key of ["reply_rate", "temperature", "max_tokens"]) {
      if (!editing.has(key)) { $(key).value = set[key]; $(key + "-value").textContent = shown[key](set[key]); }
    }
    $("mentions_only").checked = set.mentions_only;
    const list = $("allowlist"), names = d.channels || {};
    channelNames = names;
    const key = set.allowlist.map((id) => id + "=" + (names[id] || "")).join(",");
    if (list.dataset.key !== key) {
      list.dataset.key = key;
      list.innerHTML = "";
      set.allowlist.forEach((id) => {
        const li = document.createElement("li");
        const name = names[id] || "a channel not seen since the bot started";
        const remove = document.createElement("button");
        remove.className = "link"; remove.type = "button"; remove.textContent = "Remove";
        remove.setAttribute("aria-label", "Remove " + name);
        remove.onclick = () => send("/api/settings", { key: "deny", value: id });
        const label = document.createElement("span");
        label.textContent = name + " ";
        const small = document.createElement("small");
        small.textContent = id;
        li.append(label, small, " ", remove);
        list.append(li);
      });
    }
    const known = $("known-channels"), choices = Object.entries(names).filter(([id]) => !set.allowlist.includes(id));
    if (known.dataset.key !== JSON.stringify(choices)) {
      known.dataset.key = JSON.stringify(choices);
      known.innerHTML = "";
      choices.forEach(([id, name]) => { const o = document.createElement("option"); o.value = id; o.label = name; known.append(o); });
    }
    for (const [name, w] of [["day", d.day], ["week", d.week]]) {
      const rate = w.messages ? " (" + (100 * w.replies / w.messages).toFixed(1) + " %)" : "";
      $(name + "-messages").textContent = w.messages;
      $(name + "-replies").textContent = w.replies + rate;
      $(name + "-mean").textContent = ms(w.mean_reply_ms);
      $(name + "-fastest").textContent = ms(w.fastest_reply_ms);
      $(name + "-slowest").textContent = ms(w.slowest_reply_ms);
      $(name + "-errors").textContent = w.errors;
    }
    const top = Math.max(1, ...d.hourly_replies);
    $("chart").innerHTML = d.hourly_replies.map((n, i) => n ? `<rect x="${i}" y="${40 - 40 * n / top}" width="0.8" height="${40 * n / top}"></rect>` : "").join("");
  } else {
    for (const id of ["uptime", "model", "adapter", "last-reply", "queue", "discord"]) $(id).textContent = "–";
  }
  const job = state.job;
  $("job").textContent = !job ? "Nothing running." : job.running ? `${job.label}: running for ${job.seconds} s · ${job.last_line}` : `${job.label}: ${job.ok ? "done" : "failed"} after ${job.seconds} s · ${job.last_line}`;
  document.querySelectorAll("[data-action]").forEach((b) => { b.disabled = !!(job && job.running); });
}

async function refresh() {
  try {
    const response = await fetch("/api/state");
    if (response.status === 401) { location.href = "/login"; return; }
    render(await response.json());
  } catch (_) { $("phase").textContent = "Console unreachable"; $("phase").className = "pill error"; }
}
setInterval(refresh, 1000);
refresh();

// The live log.
const order = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 };
const log = $("log");
function visible(line) {
  const level = $("log-level").value, text = $("log-filter").value.toLowerCase();
  return order[line.level] >= order[level] && (!text || line.text.toLowerCase().includes(text));
}
function add(line) {
  const span = document.createElement("span");
  span.className = line.text.startsWith("console:") ? "console " + line.level : line.level;
  span.textContent = line.text + "\n";
  span.line = line;
  span.hidden = !visible(line);
  log.append(span);
  while (log.childElementCount > 5000) log.firstElementChild.remove();
  if (!$("log-pause").checked) log.scrollTop = log.scrollHeight;
}
function refilter() { for (const span of log.children) span.hidden = !visible(span.line); }
$("log-level").onchange = refilter;
$("log-filter").oninput = refilter;
const stream = new EventSource("/api/logs");
stream.onmessage = (e) => add(JSON.parse(e.data));
