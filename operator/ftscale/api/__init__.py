"""Every fact that crosses a process boundary, defined once (docs/operator.md, "Which facts
live where").

ftscale is several processes that hand each other documents: the trainer (a run pod or an
`ftscale run` child) hands a run result to the operator or the local executor, the fit Job
hands a fit summary to the operator, the operator hands status to `kubectl` and to reports. The
producer and the consumer of each hand-off import the same definition from here:

- ftscale.api.meta       API group/version/kind, plural and short names, name limits;
- ftscale.api.outcomes   run outcomes, failure reasons, the exit-code table (code → reason →
                         retriable), the termination-message path;
- ftscale.api.phases     run phases, study phases, condition types and reasons;
- ftscale.api.status     the status entry of one run and its conversion to and from RunResult;
- ftscale.api.fit_summary the fit summary (`FitSummary.to_json` / `FitSummary.parse`) and the
                         status.fit document built from it.

The run result itself (RunResult, its compact and full JSON forms) is ftscale.results.
"""
