-- Schema 4: the lease holder's machine identity (boot id and PID namespace), so only a process
-- on the same machine judges the holder's pid dead.
ALTER TABLE runs ADD COLUMN owner_machine TEXT;
