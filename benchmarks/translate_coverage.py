"""How much cross-attention each source token of a trained translate run receives: the quantity GNMT's coverage
penalty (``coverage_penalty``) takes the log of, and the size of that penalty against the length-normalised
log-probability it is added to.

    python benchmarks/translate_coverage.py RUN [--sentences 200] [--name translate_coverage]

For the first ``--sentences`` validation sentences of RUN's split: the greedy translation, then one forward pass
over it with the last decoder layer's cross-attention (heads averaged, as the penalty uses it). A source token's
coverage c is its attention mass summed over the positions that produced the output (eos included). Prints
quantiles of c over all source tokens, the largest token's share of each sentence's mass, and per sentence the
penalty's sum ``sum_i log min(c_i, 1)`` and the model's ``log p / L ** a`` for a few length penalties ``a``
(medians). A quality-free analysis (no timing): any machine state will do. Writes
benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
from common import save, table

from tinyformers.data.translation import BOS, PAD, run_tokenizer
from tinyformers.engine.rundir import RunDir
from tinyformers.tasks import get_task

PENALTIES = (1.0, 1.4, 2.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a finished `tinyformers train translate` run directory")
    ap.add_argument("--sentences", type=int, default=200)
    ap.add_argument("--name", default="translate_coverage", help="results file: benchmarks/results/NAME.json")
    args = ap.parse_args()
    task = get_task("translate")
    cfg, meta, model = RunDir(args.run).load_model(task)
    model.eval()
    data = task.data(cfg, meta)
    tok = run_tokenizer(data.meta)
    sources = [s for s, _ in data.splits["val"][: args.sentences]]
    coverages, shares, penalties, source_lens, target_lens = [], [], [], [], []
    model_terms: dict[float, list[float]] = {a: [] for a in PENALTIES}
    with torch.no_grad():
        for row in task.source_ids(cfg, tok, sources):
            src = torch.tensor([row])
            mask = torch.ones_like(src)
            out = model.generate(src, mask, max_new_tokens=cfg.max_len - 1)[0]
            tgt = out[: int((out != PAD).sum())]  # the output, eos included
            dec_in = torch.cat([torch.tensor([BOS]), tgt[:-1]])[None]
            memory, _ = model.encode(src, mask)
            dec = model.decode(dec_in, memory, mask, output_attentions=True)
            c = dec.cross_attentions[-1].mean(1)[0].sum(0)  # (S,): mass per source token
            logp = dec.logits.log_softmax(-1)[0].gather(1, tgt[:, None]).sum().item()
            coverages.append(c)
            shares.append(float(c.max() / c.sum()))
            penalties.append(c.clamp(1e-9, 1.0).log().sum().item())
            source_lens.append(len(row))
            target_lens.append(len(tgt))
            for a in PENALTIES:
                model_terms[a].append(logp / len(tgt) ** a)
    every = torch.cat(coverages)
    q10, q50, q90 = (float(v) for v in every.quantile(torch.tensor([0.1, 0.5, 0.9])))
    row = {
        "sentences": len(sources),
        "source tokens (median)": statistics.median(source_lens),
        "output tokens (median)": statistics.median(target_lens),
        "coverage q10": round(q10, 3),
        "coverage median": round(q50, 3),
        "coverage q90": round(q90, 3),
        "share under 0.05": round(float((every < 0.05).float().mean()), 3),
        "largest token's share (median)": round(statistics.median(shares), 3),
        "sum log min(c,1) (median)": round(statistics.median(penalties), 2),
        **{f"log p / L^{a:g} (median)": round(statistics.median(v), 3) for a, v in model_terms.items()},
    }
    print(table([row], list(row)))
    save(args.name, " ".join(["python", *sys.argv]), [row], {"run": args.run})


if __name__ == "__main__":
    main()
