"""Retrieval quality of chat-pdf on a PDF made here: 12 pages on distinct subjects and 24 questions, two per
page, worded differently from the page. Recall@k = share of questions whose page is among the top k passages.

    python benchmarks/chat_pdf.py [--screenshot docs/tasks/chat-pdf.png]

Prints recall@1 and recall@3; writes benchmarks/results/chat_pdf.json. tests/test_chatpdf.py runs the same
check (recall@3 >= 0.9) on every `make test`.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

PAGES = [
    "The lighthouse on Skerry Point was built in 1851 from granite quarried on the mainland. Its lamp burned "
    "whale oil until 1903, when paraffin replaced it. The last keeper, Agnes Moray, left in 1987 when the light "
    "was automated. Ships passing the reef still see its white flash every ten seconds.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen. It happens in chloroplasts, "
    "where chlorophyll absorbs mostly red and blue light and reflects green. The light reactions split water; "
    "the Calvin cycle then fixes carbon into glucose.",
    "Our sourdough recipe needs 500 grams of bread flour, 350 grams of water, 100 grams of active starter and "
    "10 grams of salt. Let the dough rise for five hours at room temperature, shape it, and bake it at 240 "
    "degrees Celsius for 45 minutes in a covered pot.",
    "The company's revenue grew 14 percent in 2023 to 8.2 million euros. Most of the growth came from the "
    "subscription business in Germany and Austria. Operating costs rose more slowly, so the margin improved "
    "from 9 to 12 percent.",
    "Employees may work from home up to three days a week after agreeing it with their manager. Equipment "
    "such as a laptop and a monitor is provided; internet costs are reimbursed up to 30 euros a month. Core "
    "hours, when everyone must be reachable, are 10 to 15.",
    "The honeybee colony has one queen, thousands of female workers and, in summer, a few hundred male drones. "
    "Workers forage for nectar and pollen and tell each other where flowers are with the waggle dance, whose "
    "angle points to the food relative to the sun.",
    "To reset the router, hold the small button on its back for ten seconds until the lights blink orange. "
    "The device restarts with factory settings: the network name and password printed on the label under it. "
    "Any port forwarding you configured must then be set up again.",
    "Mount Kilimanjaro in Tanzania is the highest mountain in Africa at 5,895 metres. It is a dormant volcano "
    "with three cones: Kibo, Mawenzi and Shira. Most climbers need six to eight days so that their bodies can "
    "adapt to the thin air.",
    "Patients should fast for eight hours before the blood test; water is allowed. Bring your insurance card "
    "and the referral letter. Results are usually available after three working days and are sent to the "
    "doctor who referred you.",
    "The violin has four strings tuned in fifths: G, D, A and E. Its body is usually made of spruce for the "
    "top and maple for the back and sides. The bow is strung with horsehair coated with rosin so that it grips "
    "the strings.",
    "Tenants must give three months' written notice to end the lease. The deposit of two months' rent is "
    "returned within six weeks after the flat is handed back, minus the cost of repairing any damage beyond "
    "normal wear and tear.",
    "The transformer architecture replaces recurrence with self-attention: every token attends to every other "
    "token, so training parallelises across the sequence. Positional encodings tell the model word order, "
    "which attention alone ignores.",
]

QUESTIONS = [
    ("Who was the last person to look after the light before it became automatic?", 1),
    ("What fuel did the lamp use in the nineteenth century?", 1),
    ("Why do leaves look green?", 2),
    ("Where in the plant cell does sugar production take place?", 2),
    ("How long should the bread bake and at what temperature?", 3),
    ("How much salt goes into the loaf?", 3),
    ("By how much did sales increase last year?", 4),
    ("What happened to the profit margin?", 4),
    ("How many days per week can staff do remote work?", 5),
    ("Is my home internet bill paid by the employer?", 5),
    ("How do worker bees communicate the location of food?", 6),
    ("What are the male bees called?", 6),
    ("How do I restore the factory settings of my wifi box?", 7),
    ("Where can I find the default wifi password?", 7),
    ("How tall is the tallest peak on the African continent?", 8),
    ("How many days does an ascent usually take?", 8),
    ("Can I drink before my blood sample is taken?", 9),
    ("When will I get the results of the lab work?", 9),
    ("Which woods are used to build the instrument?", 10),
    ("What is the bow made of?", 10),
    ("How early must I tell the landlord that I am moving out?", 11),
    ("When do I get my security deposit back?", 11),
    ("Why does the model need positional encodings?", 12),
    ("What does the architecture use instead of recurrence?", 12),
]


def make_pdf(path: str | Path, pages: list[str] = PAGES) -> Path:
    """A PDF with one page per text (reportlab)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate

    style = getSampleStyleSheet()["BodyText"]
    story = []
    for i, text in enumerate(pages):
        story.append(Paragraph(text, style))
        if i < len(pages) - 1:
            story.append(PageBreak())
    SimpleDocTemplate(str(path), pagesize=A4).build(story)
    return Path(path)


def recall(index, k: int) -> float:  # noqa: ANN001
    hits = sum(page in {p.page for p in index.search(q, k)} for q, page in QUESTIONS)
    return hits / len(QUESTIONS)


def screenshot(index, path: str) -> None:  # noqa: ANN001
    """The web page answering a question, as headless Chromium renders it."""
    import socket
    import subprocess
    import threading
    import urllib.parse

    import uvicorn

    from tinyformers.apps.serve import PdfChat, create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app([], PdfChat(index)), port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/?q=" + urllib.parse.quote("How do I restore the factory settings of my wifi box?")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,600"]
    subprocess.run(["chromium", *flags, "--virtual-time-budget=30000", f"--screenshot={path}", url], check=True)
    server.should_exit = True


def main() -> None:
    import argparse

    sys.path.insert(0, str(Path(__file__).parent))
    from common import machine, save

    from tinyformers.apps.chatpdf import PdfIndex

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--screenshot", help="also save a PNG of the web page answering a question")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        index = PdfIndex(make_pdf(Path(d) / "handbook.pdf"))
        build = time.perf_counter() - t0
        rows = [{"k": k, "recall": recall(index, k)} for k in (1, 3)]
        if args.screenshot:
            screenshot(index, args.screenshot)
    for r in rows:
        print(f"recall@{r['k']}: {r['recall']:.3f} ({len(QUESTIONS)} questions, {len(PAGES)} pages)")
    print(f"index built in {build:.1f} s")
    print(machine())
    save("chat_pdf", " ".join(["python", *sys.argv]), rows, {"index_seconds": round(build, 2)})


if __name__ == "__main__":
    main()
