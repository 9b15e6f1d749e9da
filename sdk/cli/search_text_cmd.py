"""``edgecart search-text "message" --bundle DIR``: route a customer's message and find similar texts, on this
machine (text_search bundles)."""

from __future__ import annotations

import argparse
import json

from edgecart.cli._summary import THREADS_HELP, note_fewer
from edgecart.config import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search-text", help="route a message and find the most similar texts (text_search bundles)")
    p.add_argument("message", help="the customer's message (quote it)")
    p.add_argument("--bundle", required=True, help="bundle folder or .tar.gz")
    p.add_argument("-k", "--k", type=positive_int, default=10, help="how many similar texts to return (default: 10)")
    p.add_argument("--route", action="store_true", help="also print the routing (department, class) probabilities")
    p.add_argument("--backend", default="auto", help="auto, onnxruntime, litert or executorch (default: auto)")
    p.add_argument("--artifact", default=None, help="artifact name (default: int8 first, then fp32)")
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.add_argument("--public-key", default=None, help="refuse the bundle unless it is signed by this Ed25519 public "
                   "key (PEM, from 'edgecart keygen')")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=_search_text)


def _search_text(args: argparse.Namespace) -> int:
    from edgecart.runtime.text import TextSearch

    s = TextSearch(args.bundle, args.backend, args.threads, artifact=args.artifact, public_key=args.public_key)
    e = s.embed(args.message)
    hits = s.search_embedding(e, k=args.k)
    route = s.route_embedding(e) if args.route else None
    note_fewer(args.k, len(hits), "text", f"the bundle holds {len(s)} texts")
    if args.json:
        doc = {"artifact": s.session.artifact.name, "backend": s.session.backend.name,
               "results": [{"id": h.id, "score": h.score, "label": h.label, "source": h.source, "text": h.text}
                           for h in hits]}
        if route is not None:
            doc["route"] = {head: [{"label": lab, "probability": p} for lab, p in ranked[:5]]
                            for head, ranked in route.heads.items()}
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return 0
    print(f"{s.session.artifact.name} on {s.session.backend.name}; catalog {len(s)} texts")
    if route is not None:
        for head, ranked in route.heads.items():
            print(f"route {head}: " + ", ".join(f"{lab} {p:.2f}" for lab, p in ranked[:3]))
    print(f"{'rank':>4}  {'score':>7}  {'label':<16} {'source':<8} text")
    for i, h in enumerate(hits, 1):
        text = " ".join(h.text.split())
        print(f"{i:>4}  {h.score:7.4f}  {h.label:<16} {h.source:<8} {text[:90]}")
    return 0
