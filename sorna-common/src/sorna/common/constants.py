"""Default ports, label names and limits: each fact spelled once.

Every kernel image carries a copy of this one module (``sorna.repl.imagebuild`` puts it beside
the REPL runtime, which reads the REPL ports and socket names from it), so it imports nothing
but the standard library; a test in ``sorna-repl`` checks that.
"""

from __future__ import annotations

from typing import Final

#: Agent RPC (ZMQ ROUTER) port.
AGENT_RPC_PORT: Final = 6001
#: Gateway HTTP port.
GATEWAY_HTTP_PORT: Final = 8080
#: REPL daemon ports inside a kernel with a network: input (PULL), output (PUSH), PTY in/out.
REPL_INPUT_PORT: Final = 2000
REPL_OUTPUT_PORT: Final = 2001
REPL_PTY_INPUT_PORT: Final = 2002
REPL_PTY_OUTPUT_PORT: Final = 2003
#: ipc socket names inside the bind-mounted ipc directory (kernels without a network).
REPL_INPUT_IPC_NAME: Final = "repl-in.sock"
REPL_OUTPUT_IPC_NAME: Final = "repl-out.sock"
#: ipc socket names of the tty bridge (keys in, screen out), beside the REPL's own.
REPL_PTY_INPUT_IPC_NAME: Final = "repl-pty-in.sock"
REPL_PTY_OUTPUT_IPC_NAME: Final = "repl-pty-out.sock"

#: Protocol version of the REPL wire protocol and of the image labels.
REPL_PROTOCOL_VERSION: Final = 2
#: RPC envelope version.
RPC_VERSION: Final = 1

#: Kernel image labels (PROTOCOLS.md section 4).
LABEL_VERSION: Final = "io.sorna.version"
LABEL_LANG: Final = "io.sorna.lang"
LABEL_MAXMEM: Final = "io.sorna.maxmem"
LABEL_MAXCORES: Final = "io.sorna.maxcores"
LABEL_TIMEOUT: Final = "io.sorna.timeout"
LABEL_MAXDISK: Final = "io.sorna.maxdisk"
LABEL_FEATURES: Final = "io.sorna.features"
LABEL_ENVS_CORECOUNT: Final = "io.sorna.envs.corecount"
#: The language's other names (space-separated) and its name for people, from its kernel.toml.
LABEL_ALIASES: Final = "io.sorna.aliases"
LABEL_DISPLAY_NAME: Final = "io.sorna.display-name"
#: A kernel's disk cap (its /home/work) where the image has no io.sorna.maxdisk label.
DEFAULT_MAXDISK: Final = "1g"

#: Paths inside a kernel container.
KERNEL_WORK_DIR: Final = "/home/work"
KERNEL_SORNA_DIR: Final = "/home/sorna"
KERNEL_JAIL_PATH: Final = f"{KERNEL_SORNA_DIR}/jail"
KERNEL_POLICY_PATH: Final = f"{KERNEL_SORNA_DIR}/policy.json"

#: Default Redis namespace.
REDIS_NAMESPACE: Final = "sorna"
#: Agent heartbeat interval (seconds); the alive key lives three of them.
HEARTBEAT_INTERVAL: Final = 3.0

#: Kernel container naming and labels set by the agent (re-adoption reads them back).
KERNEL_CONTAINER_PREFIX: Final = "sorna.kernel."
LABEL_KERNEL_ID: Final = "io.sorna.kernel.id"
LABEL_KERNEL_OWNER: Final = "io.sorna.kernel.owner"
LABEL_KERNEL_LANG: Final = "io.sorna.kernel.lang"
LABEL_KERNEL_LIMITS: Final = "io.sorna.kernel.limits"
LABEL_AGENT_ID: Final = "io.sorna.agent.id"
#: Where a kernel container's ipc folder (REPL sockets) is mounted.
KERNEL_IPC_DIR: Final = f"{KERNEL_SORNA_DIR}/ipc"
#: uid/gid of the kernel images' ``work`` user, owner of ``/home/work``.
KERNEL_WORK_UID: Final = 1000
#: Agent: the file in its scratch root keeping the agent id it generated on its first start.
AGENT_ID_FILE: Final = "agent-id"
#: Agent: interval of ``kernel_stats`` events (seconds).
KERNEL_STATS_INTERVAL: Final = 5.0

#: Longest file name component and longest path under /home/work (bytes of UTF-8), as Linux
#: has them (NAME_MAX, PATH_MAX): the gateway refuses longer names before any agent sees them.
MAX_FILE_NAME_BYTES: Final = 255
MAX_FILE_PATH_BYTES: Final = 4096
