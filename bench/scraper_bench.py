"""Pages per second of `scraper` against Scrapy, crawling the same loopback Wikisource mirror.

Both crawlers fetch the same pages (every work linked from the real 東坡全集 index page), with the
rate limit off, robots.txt obeyed, the same timeout and the same injected faults: the mirror
answers 5% of requests (on each page's first two attempts) with 503 + Retry-After, 429, 500,
connection resets, stalls past the timeout, or truncated bodies, and replays exactly the same
faults for every run. Each crawler runs in its own process and times itself from the start of the
crawl to its end (outputs written), without interpreter start-up; the mirror runs in a third
process and counts the pages each run had answered, which must be equal.

    python bench/scraper_bench.py                    # concurrency 1, 8 and 32, all ~6,260 pages
    python bench/scraper_bench.py --sample 0.2 -c 8  # a quicker look

Target: our pages/s >= Scrapy's at every concurrency.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

USER_AGENT_CONTACT = "bench@localhost"


# ------------------------------------------------------------------------------------ child: ours


def run_ours(index_url: str, concurrency: int, timeout: float, out: Path) -> dict:
    from scraper.__main__ import run
    from scraper.config import CrawlConfig
    from scraper.crawl import crawl

    config = CrawlConfig(
        index_url=index_url,
        out_dir=out,
        concurrency=concurrency,
        rate=0,
        contact=USER_AGENT_CONTACT,
        timeout=timeout,
        progress=False,
    )
    started = time.perf_counter()
    summary = run(crawl(config))
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "items": summary.exported.works if summary.exported else 0,
        "complete": summary.complete,
    }


# ---------------------------------------------------------------------------------- child: scrapy


def run_scrapy(index_url: str, concurrency: int, timeout: float, out: Path) -> dict:
    import scrapy
    from scrapy.crawler import CrawlerProcess

    class WikisourceSpider(scrapy.Spider):
        name = "wikisource"

        async def start(self):
            yield scrapy.Request(index_url, callback=self.parse)

        def parse(self, response):
            for anchor in response.css("ol a, small a"):
                href = anchor.attrib.get("href", "")
                if "new" in anchor.attrib.get("class", "").split() or "redlink=1" in href:
                    continue
                yield response.follow(href, callback=self.parse_page)

        def parse_page(self, response):
            poems = response.css("div.poem")
            if poems:
                text = "\n\n".join("".join(poem.css("::text").getall()).strip() for poem in poems)
            else:
                text = "\n".join(
                    "".join(p.css("::text").getall()).strip() for p in response.css(".mw-parser-output > p")
                )
            yield {
                "title": (response.css("h1#firstHeading span.mw-page-title-main::text").get() or "").strip(),
                "text": text,
                "url": response.url,
            }

    settings = {
        "USER_AGENT": f"scrapy-bench/1.0 ({USER_AGENT_CONTACT}) Scrapy/{scrapy.__version__}",
        "ROBOTSTXT_OBEY": True,
        "CONCURRENT_REQUESTS": concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency,
        "DOWNLOAD_DELAY": 0,
        "DOWNLOAD_TIMEOUT": timeout,
        "RETRY_TIMES": 5,
        "RETRY_HTTP_CODES": [500, 502, 503, 504, 522, 524, 408, 429],
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": "ERROR",
        "FEEDS": {str(out / "items.jsonl"): {"format": "jsonlines", "encoding": "utf8"}},
        "TWISTED_REACTOR": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
    }
    try:
        import uvloop  # noqa: F401

        settings["ASYNCIO_EVENT_LOOP"] = "uvloop.Loop"  # the same loop our crawler gets
    except ImportError:  # pragma: no cover
        pass
    process = CrawlerProcess(settings=settings)
    process.crawl(WikisourceSpider)
    started = time.perf_counter()
    process.start()
    seconds = time.perf_counter() - started
    items = sum(1 for _ in (out / "items.jsonl").open(encoding="utf-8")) if (out / "items.jsonl").exists() else 0
    return {"seconds": seconds, "items": items, "complete": True}


# ------------------------------------------------------------------------------------------ parent


def _control(base: str, action: str) -> dict:
    method = "POST" if action == "reset" else "GET"
    with urllib.request.urlopen(urllib.request.Request(f"{base}/__mirror__/{action}", method=method)) as resp:
        return json.loads(resp.read())


def _child(tool: str, index_url: str, concurrency: int, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-{tool}-") as out:
        cmd = [sys.executable, __file__, "--child", tool, "--index-url", index_url, "-c", str(concurrency)]
        cmd += ["--timeout", str(timeout), "--out", out]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"{tool} crawl failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--sample", type=float, default=1.0, help="share of the index's links to serve")
    parser.add_argument("--timeout", type=float, default=0.5, help="seconds before a stalled request is retried")
    parser.add_argument("--stall", type=float, default=2.0, help="how long an injected stall lasts")
    parser.add_argument("--retry-after", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", choices=["ours", "scrapy"], help=argparse.SUPPRESS)
    parser.add_argument("--index-url", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        runner = run_ours if args.child == "ours" else run_scrapy
        result = runner(args.index_url, args.concurrency[0], args.timeout, args.out)
        print(json.dumps(result))
        return 0

    mirror_cmd = [sys.executable, "-m", "tests.scraper.mirror", "--port", "0", "--no-link-variants"]
    mirror_cmd += ["--fault-rate", str(args.fault_rate), "--sample", str(args.sample), "--seed", str(args.seed)]
    mirror_cmd += ["--stall", str(args.stall), "--retry-after", str(args.retry_after), "--gone-rate", "0.005"]
    mirror = subprocess.Popen(mirror_cmd, cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        line = mirror.stdout.readline() if mirror.stdout else ""
        if not line.startswith("READY "):
            raise RuntimeError(f"mirror did not start: {line!r}")
        index_url = line.split(" ", 1)[1].strip()
        base = index_url.split("/wiki/", 1)[0]
        expected = _control(base, "expected")
        print(
            f"mirror {base}: {expected['blue_links']} pages, {expected['works']} works; "
            f"{args.fault_rate:.0%} faults, timeout {args.timeout}s, rate limit off"
        )
        print(f"{'concurrency':>11} {'ours p/s':>9} {'scrapy p/s':>10} {'ratio':>6}  pages  (ours s / scrapy s)")
        failed = False
        for i, concurrency in enumerate(args.concurrency):
            results = {}
            # Alternate who goes first so neither always meets a colder machine.
            for tool in ("ours", "scrapy") if i % 2 == 0 else ("scrapy", "ours"):
                _control(base, "reset")
                result = _child(tool, index_url, concurrency, args.timeout)
                stats = _control(base, "stats")
                result["pages"] = stats["pages"]
                result["answered"] = stats["pages_answered"]
                result["requests"] = stats["requests"]
                results[tool] = result
            ours, scrapy_ = results["ours"], results["scrapy"]
            if ours["pages"] != scrapy_["pages"]:
                print(f"warning: pages differ at concurrency {concurrency}: {ours['pages']} vs {scrapy_['pages']}")
            for name, result in (("ours", ours), ("scrapy", scrapy_)):
                if result["answered"] != result["pages"]:
                    lost = result["pages"] - result["answered"]
                    print(f"  {name}: {lost} pages ended on a fault (truncated body accepted, or given up)")
            ours_rate = ours["pages"] / ours["seconds"]
            scrapy_rate = scrapy_["pages"] / scrapy_["seconds"]
            ratio = ours_rate / scrapy_rate
            failed |= ratio < 1.0 or not ours["complete"]
            print(
                f"{concurrency:>11} {ours_rate:>9.1f} {scrapy_rate:>10.1f} {ratio:>5.2f}x  {ours['pages']}"
                f"  ({ours['seconds']:.1f} / {scrapy_['seconds']:.1f}; requests {ours['requests']} / "
                f"{scrapy_['requests']}; items {ours['items']} / {scrapy_['items']})",
                flush=True,
            )
        print("target (>= 1.0x Scrapy at every concurrency):", "met" if not failed else "NOT met")
        return 0 if not failed else 1
    finally:
        mirror.terminate()
        mirror.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
