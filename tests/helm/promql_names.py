"""Metric and label names used by a PromQL expression, for checking dashboards and alert rules
against ftscale.metric_names. Syntax itself is checked by promtool (the real parser); this only
finds names, so it needs no full grammar: strings, durations and numbers are dropped, label
matchers and grouping clauses are read apart, and what remains is a function or aggregation
(followed by a parenthesis), a keyword, or a metric name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "offset", "bool", "atan2", "inf", "nan", "start", "end"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*\"(?:[^\"\\]|\\.)*\"")
GRAFANA_VARIABLES = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h",
                     "__range_s": "3600", "__interval_ms": "60000"}


@dataclass
class Names:
    metrics: set[str] = field(default_factory=set)
    # label names in a matcher, per metric (None: a bare {…} selector without a metric name)
    matcher_labels: dict[str | None, set[str]] = field(default_factory=dict)
    grouping_labels: set[str] = field(default_factory=set)


def substitute_grafana_variables(expr: str) -> str:
    """Replace Grafana's $variables: built-in intervals by durations, dashboard variables
    (always inside regex matchers here) by `.+`."""
    def repl(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        return GRAFANA_VARIABLES.get(name, ".+")
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


def names_in(expr: str) -> Names:
    out = Names()
    text = expr
    for match in SELECTOR.finditer(text):
        labels = {m.group(1) for m in MATCHER.finditer(match.group(2))}
        out.matcher_labels.setdefault(match.group(1), set()).update(labels)
    text = SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", text)
    for match in GROUPING.finditer(text):
        out.grouping_labels |= {label.strip() for label in match.group(2).split(",") if label.strip()}
    text = GROUPING.sub(" ", text)
    text = re.sub(r"\"(?:[^\"\\]|\\.)*\"", " ", text)  # strings (e.g. histogram_quantile's none)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    text = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", text)
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = match.group(0)
        rest = text[match.end():].lstrip()
        if word in KEYWORDS or word in AGGREGATIONS or rest.startswith("("):
            continue
        if re.fullmatch(r"[0-9]", word[:1] or "x"):
            continue
        out.metrics.add(word)
    for metric in list(out.matcher_labels):
        if metric is not None:
            out.metrics.add(metric)
    return out
