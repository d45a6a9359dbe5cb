// imgsearch web UI: plain JS, no dependencies, works offline.
"use strict";
const PAGE = 40;
const $ = (s) => document.querySelector(s);
const q = $("#q"), grid = $("#grid"), statusLine = $("#status"), viewer = $("#viewer"), sort = $("#sort");
const understoodLine = $("#understood");
// What the grid shows: a text query, "similar to id", "like these ids", or an uploaded picture.
let current = null, offset = 0, exhausted = false, loading = false, shownId = null, generation = 0;
// The search being typed, started 250 ms after the last key.
let debounce;
// Pictures picked in the grid for "more like these" (ids, in the order picked).
const picked = [];

function setStatus(text, isError = false) { statusLine.textContent = text; statusLine.classList.toggle("error", isError); }

function syncUrl() {
  const params = new URLSearchParams();
  if (current?.kind === "text") params.set("q", current.q);
  if (current?.kind === "similar") params.set("similar", current.id);
  if (current?.kind === "like") {
    params.set("like", current.ids.join(","));
    if (current.text) params.set("q", current.text);
  }
  if (sort.value !== "score") params.set("sort", sort.value);
  const url = params.toString() ? `/?${params}` : "/";
  if (url !== location.pathname + location.search) history.replaceState(null, "", url);
}

// The language queries are typed in: the browser's. Models that read texts by language
// (NLLB-CLIP) read them so; the others ignore it.
const LANG = navigator.language || "";

async function fetchHits() {
  const common = `k=${PAGE}&offset=${offset}&sort=${sort.value}&lang=${encodeURIComponent(LANG)}`;
  let response;
  if (current.kind === "text") response = await fetch(`/api/search?q=${encodeURIComponent(current.q)}&${common}`);
  else if (current.kind === "similar") response = await fetch(`/api/images/${current.id}/similar?${common}`);
  else if (current.kind === "like") {
    const body = JSON.stringify({ like: current.ids, text: current.text, k: PAGE, offset, sort: sort.value, lang: LANG });
    response = await fetch("/api/search", { method: "POST", headers: { "Content-Type": "application/json" }, body });
  }
  else {
    const body = new FormData();
    body.append("image", current.file);
    response = await fetch(`/api/search/image?${common}`, { method: "POST", body });
  }
  if (response.status === 401) {
    location.replace("/login"); // signed out, or the session ended
    throw new Error("Sign in to search");
  }
  const json = await response.json();
  if (!response.ok) throw new Error(json.error?.message || response.statusText);
  return json;
}

// Signed in: show who, and a way out that ends the session on the server.
const signOut = document.getElementById("sign-out");
fetch("/api/session").then((r) => (r.ok ? r.json() : null)).then((session) => {
  if (!session?.user) return;
  signOut.textContent = `Sign out (${session.user})`;
  signOut.hidden = false;
}).catch(() => {});
signOut.addEventListener("click", async () => {
  await fetch("/api/logout", { method: "POST" });
  location.replace("/login");
});

async function load(reset) {
  // A new search starts even while a page of another is on its way (whose answer is then
  // dropped); only the next page of the same search waits for the one before it.
  if (!current || (!reset && (loading || exhausted))) return;
  const mine = reset ? ++generation : generation;
  // A new search (a click on a tag, "Similar", "Taken near here") replaces one still being typed.
  if (reset) { clearTimeout(debounce); offset = 0; exhausted = false; grid.replaceChildren(); understoodLine.textContent = ""; showExamples(); }
  loading = true;
  try {
    const { hits, took_ms, understood } = await fetchHits();
    if (mine !== generation) return; // a newer search started meanwhile
    if (reset) understoodLine.textContent = describe(understood);
    hits.forEach((hit) => grid.append(tile(hit)));
    offset += hits.length;
    exhausted = hits.length < PAGE;
    setStatus(offset ? `${offset}${exhausted ? "" : "+"} pictures · ${took_ms.toFixed(0)} ms` : "No pictures found");
  } catch (e) {
    if (mine === generation) setStatus(e.message, true);
  } finally {
    if (mine === generation) loading = false;
  }
}

// What a "like these" search combines: 'like 3 pictures and "at night"'. Otherwise how the
// server read a composed or filtered query: 'looking for "beach" + "dog" ×2 · away from
// "people" · taken July 2023 · filters type:png …'. Nothing for a plain text query.
function describe(understood) {
  if (current?.kind !== "like") return reading(understood);
  const count = `like ${current.ids.length} picture${current.ids.length === 1 ? "" : "s"}`;
  return current.text ? `${count} and ${reading(understood) || `"${current.text}"`}` : count;
}

function reading(understood) {
  if (!understood) return "";
  const { looking_for: parts, away_from: away, filters } = understood;
  const plain = parts.length <= 1 && parts.every((p) => p.weight === 1) && !away.length && !filters.length;
  if (plain) return "";
  const quoted = (text) => `"${text}"`;
  const bits = [];
  if (parts.length) bits.push("looking for " + parts.map((p) => quoted(p.text) + (p.weight === 1 ? "" : ` ×${p.weight}`)).join(" + "));
  if (away.length) bits.push("away from " + away.map(quoted).join(", "));
  if (understood.when) bits.push("taken " + understood.when);
  if (filters.length) bits.push("filters " + filters.join(" "));
  return bits.join(" · ");
}

// The other files of each shown hit's shot (a RAW beside its JPEG; a video's other moments), by
// the hit's id: named on its tile, linked in the viewer.
const otherFiles = new Map();

// Seconds into a video as people read them: "1:05", "1:02:09".
function clockTime(seconds) {
  const whole = Math.round(seconds), h = Math.floor(whole / 3600), m = Math.floor(whole / 60) % 60, s = whole % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

function tile(hit) {
  const figure = document.createElement("figure");
  figure.className = "tile";
  figure.tabIndex = 0;
  figure.dataset.id = hit.id;
  figure.dataset.path = hit.path;
  const described = hit.described?.length ? `described with: ${hit.described.join(", ")}` : "";
  figure.title = [hit.title, hit.path, described, hit.tags?.join(", ")].filter(Boolean).join("\n");
  const img = document.createElement("img");
  img.loading = "lazy";
  img.src = hit.thumbnail;
  img.alt = hit.title || hit.path.split("/").pop();
  figure.append(img);
  if (hit.also?.length) otherFiles.set(hit.id, hit.also);
  const others = [...new Set((hit.also || []).map((file) => file.path).filter((path) => path !== hit.path))];
  if (others.length) {
    const also = document.createElement("span");
    also.className = "also";
    also.textContent = others.map((path) => "+" + path.split(".").pop().toUpperCase()).join(" ");
    figure.append(also);
  }
  if (hit.rating > 0) {
    const stars = document.createElement("span");
    stars.className = "rating";
    stars.textContent = "\u2605".repeat(hit.rating);
    stars.title = `${hit.rating} of 5 stars`;
    figure.append(stars);
  }
  if (hit.at_seconds != null) {
    // A moment of a video: where in it.
    const moment = document.createElement("span");
    moment.className = "moment";
    moment.textContent = "\u25B6 " + clockTime(hit.at_seconds);
    figure.append(moment);
  }
  if (hit.score != null) {
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = hit.score.toFixed(3);
    figure.append(score);
  }
  const pick = document.createElement("input");
  pick.type = "checkbox";
  pick.className = "pick";
  pick.setAttribute("aria-label", "Pick for \u201cmore like these\u201d");
  pick.checked = picked.includes(hit.id);
  figure.classList.toggle("picked", pick.checked);
  pick.addEventListener("click", (e) => { e.stopPropagation(); togglePick(hit.id); });
  figure.append(pick);
  // A click with Ctrl, Cmd or Shift picks too; a plain click opens the picture.
  figure.addEventListener("click", (e) => (e.ctrlKey || e.metaKey || e.shiftKey ? togglePick(hit.id) : open(hit.id)));
  return figure;
}

function togglePick(id) {
  const at = picked.indexOf(id);
  if (at >= 0) picked.splice(at, 1); else picked.push(id);
  showPicks();
}

function showPicks() {
  for (const figure of grid.children) {
    const on = picked.includes(Number(figure.dataset.id));
    figure.classList.toggle("picked", on);
    figure.querySelector(".pick").checked = on;
  }
  $("#selection").hidden = picked.length === 0;
  $("#selected-count").textContent = `${picked.length} picked`;
}

// A "similar to" or "like these" list starts with the pictures it came from.
function showExamples() {
  const examples = $("#examples");
  const ids = current?.kind === "like" ? current.ids : current?.kind === "similar" ? [current.id] : [];
  examples.hidden = ids.length === 0;
  examples.replaceChildren(ids.length ? (current.kind === "like" ? "Like these:" : "Similar to:") : "");
  for (const id of ids) {
    const img = document.createElement("img");
    img.src = `/api/images/${id}/thumbnail`;
    img.alt = `picture ${id}`;
    img.dataset.id = id;
    img.addEventListener("click", () => open(id));
    examples.append(img);
  }
}

// Like the picked pictures, and like the text in the box if there is one ("…but at night").
function searchLike(ids) {
  if (!ids.length) return;
  current = { kind: "like", ids, text: q.value.trim() };
  picked.splice(0);
  showPicks();
  syncUrl();
  load(true);
}

async function open(id) {
  shownId = id;
  // The preview, not the file: a JPEG every browser shows (TIFF and camera RAW files too), and
  // a fraction of a camera file's bytes. The original is a download away.
  $("#large").src = `/api/images/${id}/preview`;
  $("#large").hidden = false;
  const clip = $("#clip");
  clip.hidden = true;
  clip.removeAttribute("src");
  $("#unplayable").hidden = true;
  $("#original").href = `/api/images/${id}/file`;
  const meta = $("#meta");
  meta.replaceChildren();
  $("#tags").replaceChildren();
  $("#keywords").replaceChildren();
  const nearby = $("#nearby");
  nearby.hidden = true;
  if (!viewer.open) viewer.showModal();
  try {
    const info = await (await fetch(`/api/images/${id}`)).json();
    if (info.at_seconds != null && shownId === id) {
      // A moment of a video: the video, from that moment (its frame shows until it plays).
      clip.poster = `/api/images/${id}/preview`;
      clip.src = `/api/images/${id}/file#t=${info.at_seconds}`;
      clip.hidden = false;
      $("#large").hidden = true;
    }
    for (const [key, value] of Object.entries(info)) {
      if (value == null || ["thumbnail", "preview", "file", "tags", "keywords"].includes(key)) continue;
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = key === "at_seconds" ? "moment" : key;
      dd.textContent = key === "at_seconds" ? clockTime(value) : Array.isArray(value) ? value.join(", ") : value;
      meta.append(dt, dd);
    }
    const also = otherFiles.get(id) || [];
    if (also.length) {
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = "also";
      dd.id = "also";
      dd.append(...also.flatMap((file, i) => {
        const link = document.createElement("a");
        link.href = `/api/images/${file.id}/file` + (file.at_seconds != null ? `#t=${file.at_seconds}` : "");
        const name = file.path.split("/").pop();
        if (file.at_seconds != null && file.path === info.path && !clip.hidden) {
          // Another moment of the video shown: the player goes there.
          link.textContent = clockTime(file.at_seconds);
          link.addEventListener("click", (e) => {
            e.preventDefault();
            // A video this browser cannot play shows that moment's frame instead.
            if (clip.error) return open(file.id);
            clip.currentTime = file.at_seconds;
            clip.play().catch(() => {});
          });
        } else {
          link.textContent = file.at_seconds != null ? `${name} ${clockTime(file.at_seconds)}` : name;
        }
        return i ? [", ", link] : [link];
      }));
      meta.append(dt, dd);
    }
    $("#tags").replaceChildren(...(info.tags || []).map((tag) => tagChip(tag)));
    $("#keywords").replaceChildren(...(info.keywords || []).map((keyword) => keywordChip(keyword)));
    // Where it was taken: the pictures within a kilometre of it, by the query language's near:.
    if (info.gps) {
      nearby.dataset.near = `near:${info.gps[0]},${info.gps[1]}`;
      nearby.hidden = false;
    }
  } catch (e) { setStatus(e.message, true); }
}

// Zero-shot tags: a chip lists the pictures with that tag.
function tagFilter(tag) { return tag.includes(" ") ? `tag:"${tag}"` : `tag:${tag}`; }
function tagChip(tag, count) {
  const chip = filterChip(tag, tagFilter(tag), count);
  chip.dataset.tag = tag;
  return chip;
}
// Keywords people gave the picture (and names of people in it): a chip lists the pictures with
// that keyword. A quote in it cannot be written in the query language: its words are (a
// keyword of quotes only finds nothing, so its chip is shown but cannot be pressed).
function keywordChip(keyword, count) {
  const words = keyword.replaceAll('"', " ").trim();
  const chip = filterChip(keyword, words.includes(" ") ? `keyword:"${words}"` : `keyword:${words}`, count);
  chip.classList.add("keyword");
  chip.disabled = !words;
  return chip;
}
function filterChip(label, filter, count) {
  const chip = document.createElement("button");
  chip.type = "button";
  chip.className = "tag";
  chip.dataset.filter = filter;
  chip.textContent = label;
  chip.title = label;
  if (count != null) {
    const n = document.createElement("span");
    n.textContent = count;
    chip.append(" ", n);
  }
  chip.addEventListener("click", () => {
    if (viewer.open) viewer.close();
    q.value = filter;
    searchText(q.value);
  });
  return chip;
}
// The most frequent tags, and keywords (people's names among them), under the filters.
async function showFrequent(url, key, nav, chip) {
  try {
    const response = await fetch(url);
    if (!response.ok) return;
    const counts = (await response.json())[key];
    nav.replaceChildren(...counts.slice(0, 15).map(chip));
    nav.hidden = counts.length === 0;
  } catch { /* an extra: the search works without them */ }
}
function showFrequentChips() {
  showFrequent("/api/tags", "tags", $("#tag-chips"), (t) => tagChip(t.tag, t.count));
  showFrequent("/api/keywords", "keywords", $("#keyword-chips"), (k) => keywordChip(k.keyword, k.count));
}

function searchText(text) {
  current = text.trim() ? { kind: "text", q: text.trim() } : null;
  syncUrl();
  if (current) load(true); else { grid.replaceChildren(); setStatus(""); understoodLine.textContent = ""; }
}

function searchSimilar(id) {
  viewer.close();
  q.value = "";
  current = { kind: "similar", id };
  syncUrl();
  load(true);
}

// Browsers give HEIC and RAW files no type, or one not under image/: the extensions the file
// picker offers count as pictures too.
const pictureExtensions = $("#file").accept.split(",").filter((accepted) => accepted.startsWith("."));
function isPicture(file) {
  const name = (file.name || "").toLowerCase();
  return file.type.startsWith("image/") || pictureExtensions.some((extension) => name.endsWith(extension));
}

function searchFile(file) {
  if (!file || !isPicture(file)) { setStatus("That is not a picture", true); return; }
  q.value = "";
  current = { kind: "upload", file };
  syncUrl();
  setStatus(`Searching with ${file.name || "the pasted picture"}…`);
  load(true);
}

q.addEventListener("input", () => { clearTimeout(debounce); debounce = setTimeout(() => searchText(q.value), 250); });
$("#search-form").addEventListener("submit", (e) => { e.preventDefault(); clearTimeout(debounce); searchText(q.value); });
sort.addEventListener("change", () => { syncUrl(); load(true); });
$("#chips").addEventListener("click", (e) => {
  const chip = e.target.dataset?.chip;
  if (!chip) return;
  q.value = (q.value.trim() + " " + chip).trim();
  q.focus();
  if (!chip.endsWith(":")) searchText(q.value);
});
$("#file").addEventListener("change", (e) => searchFile(e.target.files[0]));
$("#close").addEventListener("click", () => viewer.close());
// A video playing in the viewer stops with it.
viewer.addEventListener("close", () => $("#clip").pause());
// A video the browser cannot play (HEVC outside Safari, MPEG-2, AVI…): the moment's frame stays,
// with a word on why.
$("#clip").addEventListener("error", () => {
  if (!$("#clip").getAttribute("src")) return;
  $("#clip").hidden = true;
  $("#large").hidden = false;
  $("#unplayable").hidden = false;
});
$("#similar").addEventListener("click", () => shownId != null && searchSimilar(shownId));
$("#nearby").addEventListener("click", (e) => {
  viewer.close();
  q.value = e.currentTarget.dataset.near;
  searchText(q.value);
});
$("#like-these").addEventListener("click", () => searchLike([...picked]));
$("#clear-selection").addEventListener("click", () => { picked.splice(0); showPicks(); });

// Reverse search by drag-and-drop and by paste.
const drop = $("#drop");
document.addEventListener("dragover", (e) => { e.preventDefault(); drop.hidden = false; });
document.addEventListener("dragleave", (e) => { if (e.target === drop) drop.hidden = true; });
document.addEventListener("drop", (e) => { e.preventDefault(); drop.hidden = true; searchFile(e.dataTransfer.files[0]); });
document.addEventListener("paste", (e) => {
  const item = [...(e.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
  if (item) { e.preventDefault(); searchFile(item.getAsFile()); }
});

// Keyboard: "/" focuses the box, arrows move through results, Enter opens, Esc closes.
document.addEventListener("keydown", (e) => {
  if (e.key === "/" && document.activeElement !== q) { e.preventDefault(); q.focus(); return; }
  const tiles = [...grid.children];
  if (viewer.open && (e.key === "ArrowRight" || e.key === "ArrowLeft")) {
    const i = tiles.findIndex((t) => Number(t.dataset.id) === shownId) + (e.key === "ArrowRight" ? 1 : -1);
    if (tiles[i]) open(Number(tiles[i].dataset.id));
    return;
  }
  const i = tiles.indexOf(document.activeElement);
  if (e.key === "ArrowDown" && document.activeElement === q && tiles[0]) { e.preventDefault(); tiles[0].focus(); return; }
  if (i < 0) return;
  const perRow = Math.max(1, Math.round(grid.clientWidth / tiles[0].clientWidth));
  const next = { ArrowRight: i + 1, ArrowLeft: i - 1, ArrowDown: i + perRow, ArrowUp: i - perRow }[e.key];
  if (next !== undefined) { e.preventDefault(); (tiles[next] || (next < 0 ? q : null))?.focus(); }
  if (e.key === "Enter") open(Number(tiles[i].dataset.id));
});

// Infinite scroll.
new IntersectionObserver((entries) => { if (entries[0].isIntersecting) load(false); }).observe($("#more"));

// Duplicates: exact copies, near duplicates and bursts, one section per group, the copy to keep
// marked. Nothing is deleted from here.
const KIND_LABEL = { exact: "Exact copies", near: "Same picture, re-encoded or resized", burst: "Burst: shots seconds apart" };
async function showDuplicates() {
  current = null;
  const mine = ++generation;
  exhausted = true;
  picked.splice(0);
  showPicks();
  grid.replaceChildren();
  understoodLine.textContent = "";
  $("#examples").hidden = true;
  history.replaceState(null, "", "/?duplicates");
  setStatus("Looking for duplicates…");
  try {
    const response = await fetch("/api/duplicates");
    if (response.status === 401) { location.replace("/login"); return; }
    const json = await response.json();
    if (!response.ok) throw new Error(json.error?.message || response.statusText);
    if (mine !== generation) return;
    for (const group of json.groups) {
      const section = document.createElement("section");
      section.className = "group";
      section.dataset.kind = group.kind;
      const heading = document.createElement("h2");
      heading.textContent = `${KIND_LABEL[group.kind] || group.kind} (${group.ids.length})`;
      section.append(heading);
      group.ids.forEach((id, i) => {
        const figure = tile({ id, path: group.paths[i], thumbnail: `/api/images/${id}/thumbnail` });
        if (id === group.best) { figure.classList.add("keep"); figure.dataset.keep = "true"; }
        section.append(figure);
      });
      grid.append(section);
    }
    const count = (kind) => json.groups.filter((g) => g.kind === kind).length;
    setStatus(json.groups.length
      ? `${count("exact")} exact, ${count("near")} near-duplicate and ${count("burst")} burst groups · the marked copy is the one to keep`
      : "No duplicates or bursts");
  } catch (e) {
    if (mine === generation) setStatus(e.message, true);
  }
}
$("#show-duplicates").addEventListener("click", showDuplicates);

showFrequentChips();

// The address is the search: reload, bookmark and share work.
// Picture ids in an address ("5", "5,9,12"; a trailing comma is harmless), or null when any
// part is not one: a mistyped or cut address must not search for picture 0 or "NaN".
function pictureIds(text) {
  const parts = text.split(",").map((part) => part.trim()).filter((part) => part !== "");
  return parts.length && parts.every((part) => /^\d{1,15}$/.test(part)) ? parts.map(Number) : null;
}
function badAddress(name, value) {
  setStatus(`The address's ${name}= names no picture (\u201c${value}\u201d): it takes picture numbers, e.g. ${name}=12. Type a search instead.`, true);
}
const initial = new URLSearchParams(location.search);
if (initial.get("sort") === "date") sort.value = "date";
if (initial.has("duplicates")) showDuplicates();
else if (initial.has("similar")) {
  const ids = pictureIds(initial.get("similar"));
  if (ids?.length === 1) searchSimilar(ids[0]); else badAddress("similar", initial.get("similar"));
}
else if (initial.has("like")) {
  const ids = pictureIds(initial.get("like"));
  q.value = initial.get("q") || "";
  if (ids) searchLike(ids); else badAddress("like", initial.get("like"));
}
else if (initial.get("q")) { q.value = initial.get("q"); searchText(q.value); }
