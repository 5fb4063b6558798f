"""Attention views: what each head of each layer looks at, for one input.

Two pictures of the same weights ``softmax(Q K^T / sqrt(d_k))`` (Eq. 1 of "Attention Is All You Need"), one
``(heads, T_query, T_key)`` tensor per layer:

* a PNG grid, layers x heads, one heatmap per head (row = query token, column = key token, colour = weight
  from 0 to 1 on one scale for every panel, so heads compare);
* a self-contained HTML page in the spirit of bertviz's head view (Vig, "A Multiscale Visualization of
  Attention in the Transformer Model", ACL 2019 demos): query tokens on the left, key tokens on the right, a
  line from query ``i`` to key ``j`` as opaque as the weight ``A[i, j]``. Hovering a query token keeps only
  its lines and shades the keys it reads; hovering a key token shows which queries read it. A layer and a head
  (or the mean of the heads) are chosen in two menus. Data and script are inline: it opens offline, from a
  file, with no network and no dependency.

The page reads its starting state from the URL, so a view can be linked (and a browser test can drive
it): ``view.html?layer=2&head=1&hover=q5`` opens layer 2, head 1 (both counted from 1, ``head=mean`` for the
mean) with query token 5 (from 0) hovered; ``hover=k5`` hovers key token 5.
"""

from __future__ import annotations

import html as html_lib
import json
from pathlib import Path

from torch import Tensor

from tinyformers.errors import UserError

# Characters that would be invisible (or break a tick label) shown as visible stand-ins.
_VISIBLE = str.maketrans({" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "␍"})


def display_token(token: str) -> str:
    """A token as it is drawn: whitespace made visible, the empty string as ``∅``."""
    return token.translate(_VISIBLE) if token else "∅"


def save_attention_views(
    tokens: list[str],
    attentions: list[Tensor],
    out: Path,
    html: Path | None = None,
    query_tokens: list[str] | None = None,
    title: str = "",
) -> list[str]:
    """Write the PNG grid to ``out`` and, with ``html``, the interactive page; return the paths written.

    Args:
        tokens: the key tokens (what is attended to), as text.
        attentions: one ``(heads, T_query, T_key)`` tensor of attention weights per layer (every row a
            distribution over the keys, masked keys 0), e.g. ``output.attentions[layer][0]`` of a batch of one.
        out: the PNG file.
        html: the HTML file, or None for the PNG only.
        query_tokens: the query tokens when they are not the keys (cross-attention: decoder tokens attending
            to the source); None for self-attention.
        title: shown above the grid and on the page.

    Raises:
        ValueError: the tensors do not match the tokens (a programming error).
        UserError: an output path is not a .png / .html file or cannot be written.
    """
    queries = tokens if query_tokens is None else query_tokens
    weights = _check(tokens, queries, attentions)
    out = _output_path(out, (".png",), "the attention grid is a PNG")
    page = None if html is None else _output_path(html, (".html", ".htm"), "the interactive view is an HTML page")
    written = [_write_png(tokens, queries, weights, out, title)]
    if page is not None:
        text = _html_page(tokens, queries, weights, title, cross=query_tokens is not None)
        try:
            page.write_text(text, encoding="utf-8")
        except OSError as e:
            raise UserError(f"{page}: cannot write ({e.strerror})") from None
        written.append(str(page))
    return written


def part_paths(out: Path, html: Path | None, part: str) -> tuple[Path, Path | None]:
    """The files of one of several views of a model (encoder, decoder, cross): ``a.png`` -> ``a-<part>.png``,
    the same for ``html``. The paths the user gave are checked first, so an error names them."""
    out = _output_path(out, (".png",), "the attention grid is a PNG")
    page = None if html is None else _output_path(html, (".html", ".htm"), "the interactive view is an HTML page")
    return out.with_stem(f"{out.stem}-{part}"), None if page is None else page.with_stem(f"{page.stem}-{part}")


def _check(tokens: list[str], queries: list[str], attentions: list[Tensor]) -> list[Tensor]:
    """The weights as float32 CPU tensors, after checking every shape against the tokens."""
    if not attentions:
        raise ValueError("no attention weights given (did the model run with output_attentions=True?)")
    heads = attentions[0].shape[0] if attentions[0].dim() == 3 else -1
    checked = []
    for layer, w in enumerate(attentions):
        expected = (heads, len(queries), len(tokens))
        if w.dim() != 3 or tuple(w.shape) != expected:
            raise ValueError(f"layer {layer}: attention of shape {tuple(w.shape)}, expected (heads, T_query, T_key)")
        checked.append(w.detach().float().cpu())
    return checked


def _output_path(path: Path, suffixes: tuple[str, ...], what: str) -> Path:
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise UserError(f"{path}: {what}; give a path ending in {' or '.join(suffixes)}")
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give a file name")
    if not path.parent.is_dir():
        raise UserError(f"{path}: the directory {path.parent} does not exist")
    return path


def _write_png(tokens: list[str], queries: list[str], weights: list[Tensor], out: Path, title: str) -> str:
    """Layers x heads heatmaps; token labels on the left column and the bottom row only."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from tinyformers.viz.plots import plt, save_figure  # matplotlib is heavy: loaded when a figure is drawn

    n_layers, n_heads = len(weights), weights[0].shape[0]
    t_q, t_k = len(queries), len(tokens)
    cell = min(6.0, max(1.8, 0.14 * max(t_q, t_k)))  # inches per panel: labels readable, the file bounded
    font = min(8.0, 0.8 * 72 * cell / max(t_q, t_k))  # points: a label fits its row
    fig, axes = plt.subplots(
        n_layers, n_heads, figsize=(0.8 + cell * n_heads, 0.8 + cell * n_layers), squeeze=False, layout="constrained"
    )
    for layer in range(n_layers):
        for head in range(n_heads):
            ax = axes[layer][head]
            ax.imshow(weights[layer][head].numpy(), cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
            ax.set_xticks(range(t_k), [display_token(t) for t in tokens] if layer == n_layers - 1 else [])
            ax.set_yticks(range(t_q), [display_token(t) for t in queries] if head == 0 else [])
            ax.tick_params(labelsize=font, length=0)
            for label in ax.get_xticklabels():
                label.set(rotation=90, parse_math=False)
            for label in ax.get_yticklabels():
                label.set(parse_math=False)
            ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=8)
    scale = ScalarMappable(Normalize(0.0, 1.0), cmap="Blues")  # every panel's: weights from 0 to 1
    fig.colorbar(scale, ax=axes, shrink=0.6, label="attention weight")
    if title:
        fig.suptitle(title, parse_math=False)
    save_figure(fig, out)
    return str(out)


def _html_page(tokens: list[str], queries: list[str], weights: list[Tensor], title: str, cross: bool) -> str:
    data = {
        "tokens": [display_token(t) for t in tokens],
        "query_tokens": [display_token(t) for t in queries],
        "attentions": [w.round(decimals=4).tolist() for w in weights],  # [layer][head][query][key]
        "cross": cross,
    }
    # "<" escaped so no token (e.g. "</script>") can end the data block; JSON.parse reads \u003c back as "<"
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    heading = title or ("cross-attention" if cross else "self-attention")
    return (
        _PAGE.replace("__TITLE__", html_lib.escape(heading)).replace("__DATA__", payload).replace("__SCRIPT__", _SCRIPT)
    )


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; }
.controls label { margin-right: 1.5em; }
#readout { margin: 0.8em 0; min-height: 1.4em; font-family: monospace; }
#view { display: flex; align-items: flex-start; }
.column { display: flex; flex-direction: column; }
.column h2 { font-size: 0.8em; height: 22px; line-height: 22px; margin: 0; color: #666; font-weight: normal; }
#queries { align-items: flex-end; }
.token { height: 22px; line-height: 22px; padding: 0 6px; font-family: monospace; white-space: pre;
  cursor: default; border-radius: 3px; }
.token.active { outline: 2px solid #444; }
svg { flex: none; }
</style>
</head>
<body>
<h1>__TITLE__</h1>
<p>Hover a token on the left to see what it attends to, on the right to see what attends to it.
Line opacity and shading = attention weight.</p>
<div class="controls">
<label>Layer <select id="layer"></select></label>
<label>Head <select id="head"></select></label>
</div>
<div id="readout"></div>
<div id="view">
<div id="queries" class="column"><h2>query</h2></div>
<svg id="lines" width="160"></svg>
<div id="keys" class="column"><h2>key</h2></div>
</div>
<script id="attention-data" type="application/json">__DATA__</script>
<script>
__SCRIPT__
</script>
</body>
</html>
"""

_SCRIPT = r"""
"use strict";
const DATA = JSON.parse(document.getElementById("attention-data").textContent);
const ROW = 22;  // px per token row, the same as .token's height
const HEAD_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf"];
const state = { layer: 0, head: 0, hover: null };  // head -1 = mean of the heads; hover = {side, index}
const nHeads = DATA.attentions[0].length;
const layerSelect = document.getElementById("layer");
const headSelect = document.getElementById("head");
const svg = document.getElementById("lines");

function headColor() {
  return state.head < 0 ? "#333333" : HEAD_COLORS[state.head % HEAD_COLORS.length];
}

// The (T_query, T_key) weights of the chosen layer and head, or their mean over the heads.
function currentWeights() {
  const heads = DATA.attentions[state.layer];
  if (state.head >= 0) return heads[state.head];
  return heads[0].map((row, q) => row.map((_, k) => heads.reduce((s, h) => s + h[q][k], 0) / heads.length));
}

function option(select, value, text) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  select.appendChild(o);
}

function tokenColumn(id, side, tokens) {
  const column = document.getElementById(id);
  tokens.forEach((text, i) => {
    const el = document.createElement("div");
    el.className = "token";
    el.id = side + "-" + i;
    el.textContent = text;  // textContent, never innerHTML: a token is data, not markup
    el.addEventListener("mouseenter", () => { state.hover = { side: side, index: i }; render(); });
    el.addEventListener("mouseleave", () => { state.hover = null; render(); });
    column.appendChild(el);
  });
}

function shade(el, w) {
  const hex = headColor();
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  el.style.background = "rgba(" + r + "," + g + "," + b + "," + w.toFixed(3) + ")";
  el.dataset.weight = w.toFixed(4);
  el.title = "weight " + w.toFixed(3);
}

function render() {
  const W = currentWeights();
  const nq = DATA.query_tokens.length, nk = DATA.tokens.length;
  const hover = state.hover;
  svg.setAttribute("height", ROW * (Math.max(nq, nk) + 1));
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  document.querySelectorAll(".token").forEach((el) => {
    el.classList.remove("active");
    el.style.background = "";
    el.removeAttribute("title");
    delete el.dataset.weight;
  });
  let drawn = 0;
  for (let q = 0; q < nq; q++) {
    for (let k = 0; k < nk; k++) {
      const w = W[q][k];
      if (w < 0.005) continue;  // masked and negligible weights: no line
      if (hover && ((hover.side === "q" && hover.index !== q) || (hover.side === "k" && hover.index !== k))) continue;
      const line = document.createElementNS("http://www.w3.org/2000/svg", "line");
      line.setAttribute("x1", 4);
      line.setAttribute("y1", ROW * (q + 1.5));  // + 1 row for the column heading
      line.setAttribute("x2", 156);
      line.setAttribute("y2", ROW * (k + 1.5));
      line.setAttribute("stroke", headColor());
      line.setAttribute("stroke-width", 2);
      line.setAttribute("stroke-opacity", hover ? w : w * 0.6);
      svg.appendChild(line);
      drawn++;
    }
  }
  svg.dataset.lines = drawn;
  const headText = state.head < 0 ? "mean of heads" : "head " + (state.head + 1);
  const layerText = "layer " + (state.layer + 1) + ", " + headText;
  const readout = document.getElementById("readout");
  if (!hover) {
    readout.textContent = layerText;
  } else if (hover.side === "q") {
    document.getElementById("q-" + hover.index).classList.add("active");
    W[hover.index].forEach((w, k) => shade(document.getElementById("k-" + k), w));
    const best = W[hover.index].indexOf(Math.max(...W[hover.index]));
    readout.textContent = layerText + ": " + DATA.query_tokens[hover.index] + " attends most to " +
      DATA.tokens[best] + " (" + W[hover.index][best].toFixed(3) + ")";
  } else {
    document.getElementById("k-" + hover.index).classList.add("active");
    W.forEach((row, q) => shade(document.getElementById("q-" + q), row[hover.index]));
    readout.textContent = layerText + ": attention paid to " + DATA.tokens[hover.index] + " by each query";
  }
  document.body.dataset.layer = state.layer;
  document.body.dataset.head = state.head;
}

DATA.attentions.forEach((_, l) => option(layerSelect, l, String(l + 1)));
for (let h = 0; h < nHeads; h++) option(headSelect, h, String(h + 1));
option(headSelect, -1, "mean of heads");
layerSelect.addEventListener("change", () => { state.layer = Number(layerSelect.value); render(); });
headSelect.addEventListener("change", () => { state.head = Number(headSelect.value); render(); });
tokenColumn("queries", "q", DATA.query_tokens);
tokenColumn("keys", "k", DATA.tokens);
render();

// Starting state from the URL (?layer=2&head=1&hover=q5), applied through the same events a user triggers.
const params = new URLSearchParams(window.location.search);
function choose(select, value) {
  if ([...select.options].some((o) => o.value === value)) {
    select.value = value;
    select.dispatchEvent(new Event("change"));
  }
}
if (params.has("layer")) choose(layerSelect, String(Number(params.get("layer")) - 1));
if (params.has("head")) {
  choose(headSelect, params.get("head") === "mean" ? "-1" : String(Number(params.get("head")) - 1));
}
const hoverMatch = /^([qk])(\d+)$/.exec(params.get("hover") || "");
if (hoverMatch) {
  const el = document.getElementById(hoverMatch[1] + "-" + hoverMatch[2]);
  if (el) el.dispatchEvent(new MouseEvent("mouseenter"));
}
document.body.dataset.ready = "1";
"""
