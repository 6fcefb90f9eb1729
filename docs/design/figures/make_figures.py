#!/usr/bin/env python3
"""Draws the message-flow figures of docs/design/ as SVG sequence diagrams.

Run from anywhere: `python3 docs/design/figures/make_figures.py`. It rewrites
every `*.svg` beside it; commit the result. Only the standard library is used.

A figure is a list of lanes (the nodes) and steps. Each step is one of
  ("msg", from, to, label)      an arrow between lanes
  ("bcast", from, label)        arrows from one lane to every other lane
  ("note", lane, label)         a box on one lane (something the node does)
  ("span", first, last, label)  a box across lanes (something several do)
  ("gap", label)                a pause in time, with a label
"""

import html
import os

LANE_GAP = 170
TOP = 70
STEP = 34
LEFT = 140
FONT = "font-family='Helvetica, Arial, sans-serif'"


def text(x, y, label, size=12, anchor="middle", weight="normal", fill="#111"):
    return (
        f"<text x='{x}' y='{y}' {FONT} font-size='{size}' text-anchor='{anchor}' "
        f"font-weight='{weight}' fill='{fill}'>{html.escape(label)}</text>"
    )


def arrow(x1, x2, y, label, dashed=False):
    dash = " stroke-dasharray='5,3'" if dashed else ""
    parts = [
        f"<line x1='{x1}' y1='{y}' x2='{x2}' y2='{y}' stroke='#1f4e9c' stroke-width='1.5'"
        f" marker-end='url(#head)'{dash}/>"
    ]
    parts.append(text((x1 + x2) / 2, y - 5, label, size=11, fill="#1f4e9c"))
    return parts


def box(x, y, width, label, fill="#fff6d5", stroke="#b08a00"):
    height = 22
    return [
        f"<rect x='{x - width / 2}' y='{y - height / 2 - 4}' width='{width}' height='{height}' rx='4'"
        f" fill='{fill}' stroke='{stroke}'/>",
        text(x, y + 7 - 4, label, size=11),
    ]


def figure(title, lanes, steps, caption):
    lanes_width = LEFT * 2 + LANE_GAP * (len(lanes) - 1)
    width = int(max(lanes_width, 9.2 * len(title) + 40, 6.2 * len(caption) + 40))
    # The lanes are centred; the margins leave room for boxes on the outer lanes.
    left = (width - LANE_GAP * (len(lanes) - 1)) / 2
    xs = {lane: left + i * LANE_GAP for i, lane in enumerate(lanes)}
    y = TOP + 30
    body = []
    for step in steps:
        kind = step[0]
        if kind == "msg":
            _, source, target, label = step
            body += arrow(xs[source], xs[target], y, label)
        elif kind == "bcast":
            _, source, label = step
            # Nearest first, each a little lower, so that overlapping arrows stay apart.
            others = sorted((lane for lane in lanes if lane != source), key=lambda lane: abs(xs[lane] - xs[source]))
            for index, target in enumerate(others):
                body += arrow(xs[source], xs[target], y + 5 * index, label if index == 0 else "", dashed=index > 0)
            y += 5 * (len(others) - 1)
        elif kind == "note":
            _, lane, label = step
            body += box(xs[lane], y, max(120, 7 * len(label)), label)
        elif kind == "span":
            _, first, last, label = step
            left, right = xs[first], xs[last]
            body += box((left + right) / 2, y, right - left + 130, label, fill="#e8f3e8", stroke="#3c7a3c")
        elif kind == "gap":
            _, label = step
            body.append(
                f"<line x1='20' y1='{y - 6}' x2='{width - 20}' y2='{y - 6}' stroke='#999' stroke-dasharray='2,4'/>"
            )
            body.append(text(24, y + 8, label, size=11, anchor="start", fill="#555"))
        else:
            raise ValueError(f"unknown step {kind}")
        y += STEP
    height = y + 40
    lines = []
    for lane, x in xs.items():
        lines.append(f"<line x1='{x}' y1='{TOP + 10}' x2='{x}' y2='{y}' stroke='#888' stroke-width='1'/>")
        lines.append(
            f"<rect x='{x - 55}' y='{TOP - 18}' width='110' height='26' rx='5' fill='#eef2fa' stroke='#1f4e9c'/>"
        )
        lines.append(text(x, TOP, lane, size=13, weight="bold"))
    head = (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}'"
        f" viewBox='0 0 {width} {height}' role='img'>"
        f"<title>{html.escape(title)}</title>"
        "<defs><marker id='head' markerWidth='8' markerHeight='8' refX='7' refY='4' orient='auto'>"
        "<path d='M0,0 L8,4 L0,8 z' fill='#1f4e9c'/></marker></defs>"
        f"<rect width='{width}' height='{height}' fill='white'/>"
        + text(width / 2, 26, title, size=15, weight="bold")
    )
    foot = text(width / 2, height - 14, caption, size=11, fill="#555") + "</svg>\n"
    return head + "".join(lines) + "".join(body) + foot


FIGURES = {
    "drive-loop.svg": figure(
        "The drive loop: one input, one Output, handled in order",
        ["driver", "core (Node)", "storage", "network", "state machine"],
        [
            ("msg", "driver", "core (Node)", "tick(now_ms) before any input"),
            ("msg", "driver", "core (Node)", "step(message) / propose / read_index"),
            ("msg", "core (Node)", "driver", "Output"),
            ("msg", "driver", "storage", "1. persist snapshot, hard_state, log_write"),
            ("note", "storage", "write + fsync (group commit)"),
            ("msg", "storage", "driver", "durable"),
            ("msg", "driver", "network", "2. send messages"),
            ("msg", "driver", "state machine", "3. apply committed_entries"),
            ("msg", "driver", "state machine", "4. serve read_states once applied"),
            ("note", "driver", "5. events: logs, metrics"),
        ],
        "A crash before the fsync loses the whole batch, its messages included: nothing promised is forgotten.",
    ),
    "fast-failover.svg": figure(
        "A conclave failover: counted misses, SDOWN, ODOWN, the vote exchange, BecomeLeader",
        ["n1 (leader)", "n2", "n3", "n4", "n5"],
        [
            ("bcast", "n1 (leader)", "heartbeat (every 50 ms)"),
            ("note", "n1 (leader)", "crashes"),
            ("gap", "5 heartbeat timeouts without a heartbeat (250 ms)"),
            ("note", "n2", "5 misses: SDOWN"),
            ("msg", "n2", "n3", "SubjectiveDown(n1, term 4, version)"),
            ("note", "n3", "near its limit: SDOWN too"),
            ("msg", "n3", "n4", "SubjectiveDown(n1, term 4, version)"),
            ("note", "n4", "3 of 5 hold n1 down: ODOWN"),
            ("bcast", "n4", "ObjectiveDown: start ballot 5"),
            ("span", "n2", "n5", "Looking: each votes for the best version reported"),
            ("msg", "n2", "n3", "Vote(ballot 5, n3 (4, 120))"),
            ("msg", "n5", "n3", "Vote(ballot 5, n3 (4, 120))"),
            ("note", "n3", "every live voter agrees: finalize at once"),
            ("msg", "n2", "n3", "binding grant (term 5 persisted first)"),
            ("msg", "n4", "n3", "binding grant"),
            ("note", "n3", "leader-elect: appends BecomeLeader(n1's leader term + 1)"),
            ("bcast", "n3", "AppendEntries [BecomeLeader]"),
            ("note", "n3", "a majority acked: commits, serves"),
        ],
        "fast mode is the same without BecomeLeader: the winner serves at once, with a no-op.",
    ),
    "gapless-election.svg": figure(
        "A gapless election: Raft campaign, vote lease, BecomeLeader, commit, serve",
        ["n1", "n2", "n3"],
        [
            ("note", "n1", "election timeout"),
            ("bcast", "n1", "RequestVote(pre_vote, ballot 8)"),
            ("msg", "n2", "n1", "pre-vote granted"),
            ("bcast", "n1", "RequestVote(ballot 8, last (7, 42))"),
            ("note", "n2", "grants: vote lease starts"),
            ("msg", "n2", "n1", "vote granted"),
            ("note", "n1", "leader-elect: BecomeLeader(lt 6)"),
            ("msg", "n3", "n2", "RequestVote(ballot 9)"),
            ("note", "n2", "dropped: vote lease"),
            ("bcast", "n1", "AppendEntries [BecomeLeader(6)]"),
            ("msg", "n2", "n1", "accepted, match 43"),
            ("note", "n1", "commits 43: serving leader of lt 6"),
            ("bcast", "n1", "heartbeat, commit 43"),
            ("span", "n1", "n3", "every node: LeaderTermCommitted(6, n1)"),
        ],
        "The leader term is one above the last BecomeLeader in the winner's own log; voters never check it.",
    ),
    "read-index.svg": figure(
        "ReadIndex: note the commit, confirm leadership with a quorum, serve once applied",
        ["client", "leader", "follower A", "follower B"],
        [
            ("msg", "client", "leader", "GET k"),
            ("note", "leader", "read_index: index = commit (57)"),
            ("bcast", "leader", "AppendEntries(read round 12)"),
            ("msg", "follower A", "leader", "AppendResponse(echo 12)"),
            ("note", "leader", "quorum echoed 12: release"),
            ("note", "leader", "read_states: (context, 57)"),
            ("note", "leader", "applied >= 57: serve"),
            ("msg", "leader", "client", "value"),
        ],
        "No log entry and no clock: reads arriving meanwhile share the next round.",
    ),
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    for name, svg in FIGURES.items():
        with open(os.path.join(here, name), "w", encoding="utf-8") as out:
            out.write(svg)
        print("wrote", name)


if __name__ == "__main__":
    main()
