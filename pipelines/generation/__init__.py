"""The attached clip generator: diffusers text-to-video clips made where demand has no supply
and on request, under cameo-consent, rights-holder opt-out and prompt-safety rules.

Modules: :mod:`settings` (typed configuration), :mod:`generator` (loads the diffusers pipeline
and renders frames), :mod:`media` (mp4 and poster encoding), :mod:`queue` (DuckDB job queue),
:mod:`rules` (consent, opt-outs, prompt safety), :mod:`worker` (runs queued jobs with bounded
concurrency, retries and timeouts), :mod:`gaps` (finds demand without supply), :mod:`service`
(what the API and CLI call), :mod:`jobs` (scheduled jobs) and :mod:`wiring` (engine install).
"""
