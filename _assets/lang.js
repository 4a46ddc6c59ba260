/* Language switch of the book: 中文 / English / 中英.
 *
 * Prose cells are wrapped in <div class="lang-zh"> / <div class="lang-en"> by
 * _ext/bookext.py (code cells tagged lang-* carry class tag_lang-*). The choice
 * is stored in localStorage, so it holds across pages, reloads and tabs, and is
 * applied to <html data-lang="..."> before the page is drawn (this script runs
 * in <head>), so the other language never flashes. First visit: the browser's
 * language decides.
 */
(function () {
  "use strict";
  var KEY = "dlkb-book-lang";
  var MODES = [
    { mode: "zh", label: "中文", title: "只显示中文 Show Chinese only" },
    { mode: "en", label: "English", title: "Show English only 只显示英文" },
    { mode: "both", label: "中英", title: "两种语言都显示 Show both languages" }
  ];
  var VALID = MODES.map(function (m) { return m.mode; });

  function stored() {
    try { return window.localStorage.getItem(KEY); } catch (e) { return null; }
  }
  function initial() {
    var saved = stored();
    if (VALID.indexOf(saved) >= 0) return saved;
    var nav = (navigator.language || "").toLowerCase();
    return nav.indexOf("zh") === 0 ? "zh" : "en";
  }
  function apply(mode) {
    document.documentElement.setAttribute("data-lang", mode);
    var buttons = document.querySelectorAll(".dlkb-lang-switch button");
    for (var i = 0; i < buttons.length; i++) {
      var on = buttons[i].getAttribute("data-mode") === mode;
      buttons[i].setAttribute("aria-pressed", on ? "true" : "false");
    }
  }
  function choose(mode) {
    try { window.localStorage.setItem(KEY, mode); } catch (e) { /* private mode: this page only */ }
    apply(mode);
  }

  apply(initial());

  function build() {
    if (document.querySelector(".dlkb-lang-switch")) return;
    var group = document.createElement("div");
    group.className = "dlkb-lang-switch";
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", "语言 Language");
    MODES.forEach(function (m) {
      var b = document.createElement("button");
      b.type = "button";
      b.textContent = m.label;
      b.title = m.title;
      b.setAttribute("data-mode", m.mode);
      b.addEventListener("click", function () { choose(m.mode); });
      group.appendChild(b);
    });
    var host = document.querySelector(".article-header-buttons") ||
               document.querySelector(".header-article-items__end") ||
               document.querySelector(".bd-header-article");
    if (host) {
      host.insertBefore(group, host.firstChild);
    } else {
      group.classList.add("dlkb-lang-switch--floating");
      document.body.appendChild(group);
    }
    apply(document.documentElement.getAttribute("data-lang") || initial());
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", build);
  } else {
    build();
  }
  // Another tab changed the language: follow it.
  window.addEventListener("storage", function (e) {
    if (e.key === KEY && VALID.indexOf(e.newValue) >= 0) apply(e.newValue);
  });
})();
