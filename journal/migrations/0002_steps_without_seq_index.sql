-- Schema 2: the steps' seq index is dropped.
--
-- Every new step wrote a page of this index inside the per-step commits, about a fifth of the
-- WAL each step adds (and fsyncs). A run has at most a few thousand steps, so reading them in
-- order sorts in memory and the next seq comes from the primary-key range of the run.
DROP INDEX IF EXISTS steps_by_seq;
