/* Chinese query splitting for Sphinx search.
 *
 * The index is built with jieba (plus the glossary as a user dictionary), so it
 * holds Chinese words, not sentences. Sphinx's default splitQuery keeps a run
 * of Chinese characters as one term, which then matches nothing unless the run
 * happens to be exactly one indexed word. This splitter cuts every run of
 * Chinese characters into the longest words the index knows (forward maximum
 * matching), the same granularity as the index; Latin words pass unchanged, so
 * English search works as before. Unknown single characters are dropped, as the
 * index drops them; unknown longer pieces stay, so they must match too.
 */
(function () {
  "use strict";
  var HAN = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]/;
  var RUNS = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[^\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+/g;
  var MAX_WORD = 8;

  function known() {
    // searchtools.js declares `const Search`: a global binding, but not a window property.
    var search = typeof Search !== "undefined" ? Search : window.Search;
    var index = search && search._index;
    if (!index) return null;
    return function (word) {
      return Object.prototype.hasOwnProperty.call(index.terms || {}, word) ||
             Object.prototype.hasOwnProperty.call(index.titleterms || {}, word);
    };
  }

  function segment(run, has) {
    // Forward maximum matching. Characters that start no known word collect into an
    // "unknown" piece, kept as a term when it has 2+ characters: a query with a word
    // the book never uses then finds nothing, instead of matching on its known half.
    var words = [];
    var unknown = "";
    var flush = function () { if (unknown.length >= 2) words.push(unknown); unknown = ""; };
    var i = 0;
    while (i < run.length) {
      var match = null;
      for (var len = Math.min(MAX_WORD, run.length - i); len >= 2; len--) {
        var candidate = run.substr(i, len);
        if (has(candidate)) { match = candidate; break; }
      }
      if (match) { flush(); words.push(match); i += match.length; } else { unknown += run.charAt(i); i += 1; }
    }
    flush();
    return words;
  }

  window.dlkbSplitQuery = function (query) {
    var has = known();
    var out = [];
    query.split(/[^\p{Letter}\p{Number}_\p{Emoji_Presentation}]+/gu).forEach(function (part) {
      if (!part) return;
      (part.match(RUNS) || []).forEach(function (run) {
        if (!HAN.test(run)) { out.push(run); return; }
        var words = has ? segment(run, has) : [];
        // Nothing known: keep the run, so the search honestly finds nothing.
        Array.prototype.push.apply(out, words.length ? words : [run]);
      });
    });
    return out;
  };
  window.splitQuery = window.dlkbSplitQuery;

  // Result snippets: the page text still holds the TeX source of its formulas
  // (MathJax typesets them only in the browser), e.g. "\\(\\alpha_t\\)". Show "…" there.
  var MATH = /\\\([\s\S]*?\\\)|\\\[[\s\S]*?\\\]|\$\$[\s\S]*?\$\$/g;
  window.dlkbStripMath = function (text) {
    return text.replace(MATH, " … ").replace(/[ \t]{2,}/g, " ");
  };
  function patchSnippets() {
    var search = typeof Search !== "undefined" ? Search : window.Search;
    if (!search || !search.htmlToText || search.htmlToText.dlkbPatched) return;
    var original = search.htmlToText;
    search.htmlToText = function (html, anchor) {
      return window.dlkbStripMath(original.call(this, html, anchor));
    };
    search.htmlToText.dlkbPatched = true;
  }
  patchSnippets();
  document.addEventListener("DOMContentLoaded", patchSnippets);
})();
