-- The initial version's training score per scenario, the first member of a tuning run's
-- Pareto pool (tuning.run_store.TuningRun.pareto).
ALTER TABLE tuning_runs ADD COLUMN IF NOT EXISTS initial_per_scenario jsonb;
