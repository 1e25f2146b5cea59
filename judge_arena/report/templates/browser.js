// The battle browser and the category selector. Untrusted text (prompts, answers, replies, names) is only ever
// written with textContent or as an <option>'s text, never parsed as markup.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("arena-data").textContent);
  var texts = data.texts;
  var PAGE = 50;
  var VERDICTS = ["A>>B", "A>B", "A=B", "B>A", "B>>A"];

  function el(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (className) node.className = className;
    return node;
  }
  function fill(select, options) {
    options.forEach(function (option) { select.appendChild(new Option(option[1], option[0])); });
  }

  // Categories: show the small multiples of one view at a time.
  var categoryView = document.getElementById("category-view");
  if (categoryView) {
    var showCategories = function () {
      document.querySelectorAll(".category-group").forEach(function (group) {
        group.hidden = group.dataset.key !== categoryView.value;
      });
    };
    categoryView.addEventListener("change", showCategories);
    showCategories();
  }

  var answers = new Map();
  data.answers.forEach(function (answer) { answers.set(answer[0] + ":" + answer[1], answer[2]); });
  var categories = Array.from(new Set(data.prompts.map(function (p) { return p[1]; }))).sort();
  var views = [];
  data.judges.forEach(function (judge, j) {
    data.normalizations.forEach(function (normalization, n) {
      if (data.games.some(function (g) { return g[1] === j && g[2] === n; })) views.push([j + ":" + n, judge + " · " + normalization]);
    });
  });

  var filterModel = document.getElementById("filter-model");
  var filterCategory = document.getElementById("filter-category");
  var filterView = document.getElementById("filter-view");
  var filterVerdict = document.getElementById("filter-verdict");
  fill(filterModel, data.models.map(function (m, i) { return [String(i), m]; }));
  fill(filterCategory, categories.map(function (c) { return [c, c]; }));
  fill(filterView, views);
  fill(filterVerdict, VERDICTS.map(function (v) { return [v, v]; })
    .concat([["unparsed", "unparsed"], ["reasked", "re-asked"], ["flagged", "flagged by the defence"]]));

  var state = { page: 0, shown: [], selected: -1 };

  function matches(game) {
    if (filterModel.value !== "" && game[3] !== +filterModel.value && game[4] !== +filterModel.value) return false;
    if (filterCategory.value !== "" && data.prompts[game[0]][1] !== filterCategory.value) return false;
    if (filterView.value !== "" && game[1] + ":" + game[2] !== filterView.value) return false;
    var verdict = filterVerdict.value;
    if (verdict === "unparsed") return game[5] === null;
    if (verdict === "reasked") return game[8] >= 0;
    if (verdict === "flagged") return game[6] !== "";
    return verdict === "" || game[5] === verdict;
  }

  function verdictText(game) { return game[5] === null ? "unparsed" : game[5]; }

  function renderList() {
    var tbody = document.querySelector("#battle-table tbody");
    tbody.replaceChildren();
    var pages = Math.max(1, Math.ceil(state.shown.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    state.shown.slice(state.page * PAGE, (state.page + 1) * PAGE).forEach(function (index) {
      var game = data.games[index];
      var row = el("tr");
      row.dataset.game = String(index);
      if (index === state.selected) row.className = "selected";
      row.appendChild(el("td", data.prompts[game[0]][0], "left mono"));
      row.appendChild(el("td", data.models[game[3]], "left"));
      row.appendChild(el("td", data.models[game[4]], "left"));
      row.appendChild(el("td", verdictText(game), game[5] === null ? "warn" : "verdict-cell"));
      row.appendChild(el("td", data.judges[game[1]] + " · " + data.normalizations[game[2]], "left"));
      row.appendChild(el("td", data.prompts[game[0]][1], "left"));
      row.addEventListener("click", function () { openGame(index); });
      tbody.appendChild(row);
    });
    document.getElementById("page-info").textContent =
      state.shown.length + " games · page " + (state.page + 1) + " of " + pages;
    document.getElementById("page-prev").disabled = state.page === 0;
    document.getElementById("page-next").disabled = state.page >= pages - 1;
  }

  function applyFilters() {
    state.shown = [];
    data.games.forEach(function (game, index) { if (matches(game)) state.shown.push(index); });
    state.page = 0;
    renderList();
  }

  function turnsBlock(turnIds, className) {
    var box = el("div", null, className);
    turnIds.forEach(function (id, turn) {
      if (turnIds.length > 1) box.appendChild(el("div", "turn " + (turn + 1), "turn-label"));
      box.appendChild(el("pre", texts[id], "text"));
    });
    return box;
  }

  function openGame(index) {
    var game = data.games[index];
    var prompt = data.prompts[game[0]];
    state.selected = index;
    document.getElementById("game-detail").hidden = false;
    document.getElementById("game-title").textContent =
      prompt[0] + " · " + data.judges[game[1]] + " · judged " + data.normalizations[game[2]];
    var verdict = document.getElementById("game-verdict");
    verdict.textContent = verdictText(game);
    verdict.className = "tag " + (game[5] === null ? "warn" : "verdict");
    document.getElementById("game-flags").textContent = game[6] ? "flags: " + game[6].split(";").join(", ") : "";
    document.getElementById("game-prompt").replaceChildren(turnsBlock(prompt[2], "prompt"));
    var grid = document.getElementById("game-answers");
    grid.replaceChildren();
    [["A", game[3]], ["B", game[4]]].forEach(function (side) {
      var column = el("div", null, "answer-side");
      column.appendChild(el("h5", "Assistant " + side[0] + ": " + data.models[side[1]]));
      var versions = answers.get(side[1] + ":" + game[0]);
      var row = el("div", null, "versions");
      if (!versions) row.appendChild(el("p", "answer not in the run folder", "muted"));
      else data.normalizations.forEach(function (normalization, n) {
        var version = el("div", null, "version" + (n === game[2] ? " judged" : ""));
        version.appendChild(el("div", normalization + (n === game[2] ? " (as judged)" : ""), "version-label"));
        version.appendChild(turnsBlock(versions[n], "answer"));
        row.appendChild(version);
      });
      column.appendChild(row);
      grid.appendChild(column);
    });
    document.getElementById("game-reply").textContent =
      game[7] >= 0 ? texts[game[7]] : "(no reply recorded: the run folder has no judgments.jsonl)";
    document.getElementById("game-reask").hidden = game[8] < 0;
    document.getElementById("game-reask-text").textContent = game[8] >= 0 ? texts[game[8]] : "";
    renderList();
    document.getElementById("game-detail").scrollIntoView({ block: "nearest" });
  }

  [filterModel, filterCategory, filterView, filterVerdict].forEach(function (select) {
    select.addEventListener("change", applyFilters);
  });
  document.getElementById("page-prev").addEventListener("click", function () { state.page -= 1; renderList(); });
  document.getElementById("page-next").addEventListener("click", function () { state.page += 1; renderList(); });
  applyFilters();
})();
