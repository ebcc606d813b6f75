-- Schema 3: a running attempt lives on its step row until it ends; `attempts` holds attempts
-- with an outcome.
--
-- An intent record (an attempt's start, journaled before its outcome is known) then rewrites one
-- page, the step's, instead of that page and one of `attempts`; the outcome inserts the attempt
-- row whole. A step whose attempt outlived the intent delay writes about 3.5 WAL pages instead of
-- 4.5. The journal API still reports the running attempt as an attempt without an outcome.
ALTER TABLE steps ADD COLUMN open_fence INTEGER;       -- fence of running attempt `attempts`
ALTER TABLE steps ADD COLUMN open_started_at INTEGER;  -- and when it started

UPDATE steps SET (open_fence, open_started_at) = (
    SELECT a.fence, a.started_at FROM attempts a
    WHERE a.run_id = steps.run_id AND a.step_key = steps.key
      AND a.attempt = steps.attempts AND a.outcome IS NULL
);
DELETE FROM attempts WHERE outcome IS NULL AND attempt = (
    SELECT s.attempts FROM steps s WHERE s.run_id = attempts.run_id AND s.key = attempts.step_key
);
-- Any other attempt without an outcome was abandoned by a process that stopped.
UPDATE attempts SET outcome = 'failed', error_class = 'interrupted',
    message = 'no outcome recorded: the process running this attempt stopped'
WHERE outcome IS NULL;
