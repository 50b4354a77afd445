-- Core schema of the control plane: patterns (with tracked versions), the agents that run them, and executions.

CREATE TABLE patterns (
    id          SERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    version     TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE agents (
    id         SERIAL PRIMARY KEY,
    pattern_id INTEGER NOT NULL REFERENCES patterns(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    position   INTEGER NOT NULL,
    UNIQUE (pattern_id, name)
);

CREATE TABLE executions (
    id          BIGSERIAL PRIMARY KEY,
    pattern_id  INTEGER NOT NULL REFERENCES patterns(id),
    status      TEXT NOT NULL,
    input       JSONB NOT NULL,
    output      JSONB NOT NULL,
    confidence  DOUBLE PRECISION NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX executions_created_at_idx ON executions (created_at DESC);

INSERT INTO patterns (name, version, description) VALUES
    ('sequential', '1.0.0', 'Agents run one after another, each refining the previous output'),
    ('parallel', '1.2.0', 'Agents run side by side and their answers are merged'),
    ('review', '2.0.1', 'A worker drafts, a reviewer scores the draft');

INSERT INTO agents (pattern_id, name, role, position)
SELECT p.id, a.name, a.role, a.position
FROM patterns p
JOIN (VALUES
    ('sequential', 'planner', 'plan', 1),
    ('sequential', 'writer', 'draft', 2),
    ('sequential', 'editor', 'refine', 3),
    ('parallel', 'analyst-a', 'analyse', 1),
    ('parallel', 'analyst-b', 'analyse', 2),
    ('review', 'worker', 'draft', 1),
    ('review', 'reviewer', 'score', 2)
) AS a(pattern, name, role, position) ON a.pattern = p.name;
