"""The attached clip generator: diffusers text-to-video clips made where demand has no supply
and on request, under cameo-consent, public-figure, rights-holder opt-out and prompt-safety
rules, with signed provenance and a review of what was rendered (docs/generator.md).

Modules: :mod:`settings` (typed configuration), :mod:`generator` (loads the diffusers pipeline
and renders frames), :mod:`media` (mp4 and poster encoding), :mod:`queue` (DuckDB job queue),
:mod:`rules` (cameo consent, prompt safety), :mod:`names` (robust name matching),
:mod:`rights` (rights-holder opt-outs, holder accounts, notification log), :mod:`people`
(protected people), :mod:`provenance` (the signed C2PA manifest in each mp4), :mod:`review`
(frame review, reports, the review queue), :mod:`worker` (runs queued jobs with bounded
concurrency, retries and timeouts), :mod:`gaps` (finds demand without supply), :mod:`service`
(what the API and CLI call), :mod:`jobs` (scheduled jobs) and :mod:`wiring` (engine install).
"""
