-- Keypairs, the kernel books, and their indexes.
CREATE TABLE keypairs (
    access_key        text PRIMARY KEY,
    secret_key        text NOT NULL,
    owner             text NOT NULL DEFAULT '',
    is_active         boolean NOT NULL DEFAULT true,
    is_admin          boolean NOT NULL DEFAULT false,
    concurrency_limit integer NOT NULL,
    concurrency_used  integer NOT NULL DEFAULT 0 CHECK (concurrency_used >= 0),
    rate_limit        integer NOT NULL,
    num_queries       bigint NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    last_used         timestamptz
);

CREATE TABLE kernels (
    id                 uuid PRIMARY KEY,
    access_key         text NOT NULL REFERENCES keypairs (access_key),
    lang               text NOT NULL,
    token              text NOT NULL,
    agent_id           text,
    agent_addr         text,
    status             text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    terminated_at      timestamptz,
    termination_reason text,
    mem_limit_kib      bigint,
    exec_timeout_ms    bigint,
    num_queries        bigint NOT NULL DEFAULT 0,
    cpu_used_ms        bigint NOT NULL DEFAULT 0,
    max_mem_kib        bigint NOT NULL DEFAULT 0,
    io_read_bytes      bigint NOT NULL DEFAULT 0,
    io_write_bytes     bigint NOT NULL DEFAULT 0,
    net_rx_bytes       bigint NOT NULL DEFAULT 0,
    net_tx_bytes       bigint NOT NULL DEFAULT 0,
    stats              jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX kernels_live_by_agent ON kernels (agent_id) WHERE terminated_at IS NULL;
CREATE INDEX kernels_live_by_owner ON kernels (access_key) WHERE terminated_at IS NULL;
