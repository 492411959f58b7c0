---@meta tcp_port_used
-- LuaLS definitions for tcp_port_used (https://luals.github.io). Add this
-- directory to `workspace.library`; tcp_port_used/ngx.lua and
-- tcp_port_used/uv.lua beside this file type the adapters.

---How a probe decides: `"connect"` (a server accepts), `"bind"` (a
---SO_REUSEADDR socket cannot bind; for UDP, a socket without it), `"any"`
---(either), `"listen"` (the kernel lists a listening socket, for UDP a
---bound unconnected one; this machine only, sends nothing). UDP takes
---`"bind"` (its default) and `"listen"` only.
---@alias tcp_port_used.mode "connect"|"bind"|"any"|"listen"

---The transport protocol of the port: `"tcp"` (default) or `"udp"` (game
---servers; modes `"bind"` and `"listen"`).
---@alias tcp_port_used.proto "tcp"|"udp"

---How a connected probe closes: `"auto"` (FIN, or a reset above about 100
---probes a second), `"graceful"` (always FIN), `"reset"` (always RST).
---@alias tcp_port_used.close "auto"|"graceful"|"reset"

---What a wait's callback (on_used, on_free) receives: the wait's returns.
---@alias tcp_port_used.callback fun(ok: true|nil, err: string|nil, last_err: string|nil, code: string|nil)

---What a readiness exchange is given: LuaSocket's and cosockets' send and
---receive, over whichever transport runs it.
---@class tcp_port_used.stream
local stream = {}

---Sends all of data: the bytes sent, or `nil, err, code` (`"closed"`,
---`"timeout"`; `"ECONNRESET"`, `"ETIMEDOUT"` ...).
---@param data string
---@return integer|nil sent
---@return string? err
---@return string? code
function stream:send(data) end

---`"*l"`: a line (CR LF removed; longer than 8 KiB is `EPROTO`), or a
---byte count (at most 1 MiB); or `nil, err, code`.
---@param pattern? "*l"|integer
---@return string|nil data
---@return string? err
---@return string? code
function stream:receive(pattern) end

---Your own exchange: `true` ready, `false [, reason]` not ready, or
---`nil, err, code` (a missing code is `EPROTO`).
---@alias tcp_port_used.exchange fun(s: tcp_port_used.stream): boolean|nil, string?, string?

---How `ready` asks the server: `"http"` (GET `path`, a `status`),
---`"redis"` (PING), `"postgres"` (a StartupMessage) or your exchange.
---@alias tcp_port_used.ready "http"|"redis"|"postgres"|tcp_port_used.exchange

---HTTP statuses that mean ready: one, a list, or a class such as `"2xx"`.
---@alias tcp_port_used.status integer|integer[]|"1xx"|"2xx"|"3xx"|"4xx"|"5xx"

---@class tcp_port_used.check_opts
---@field port? integer 1..65535 (not with `unix`)
---@field host? string IPv4, IPv6 (`::1` or `[::1]`) or a name; nil: 127.0.0.1 and ::1
---@field timeout_ms? number bounds the attempt, the exchange included (default 1000)
---@field mode? tcp_port_used.mode default "connect" ("bind" for UDP)
---@field close? tcp_port_used.close default "auto" (an exchange closes gracefully)
---@field proto? tcp_port_used.proto default "tcp" (readiness and `unix`: TCP only)
---@field ready? tcp_port_used.ready ask the server if it is ready
---@field path? string `ready = "http"`: the path, starting with "/" (default "/")
---@field status? tcp_port_used.status `ready = "http"`: default 200..399
---@field user? string `ready = "postgres"`: the role named (default "postgres")
---@field database? string `ready = "postgres"`: default "postgres"
---@field unix? string the path of a Unix-domain socket, instead of host and port

---What `on_retry` is given before each sleep of a wait.
---@class tcp_port_used.retry_info
---@field attempt integer probes of every pending port so far
---@field elapsed_ms number since the wait started
---@field wait_ms number the sleep about to start
---@field ports integer[] the ports not yet in the wanted state
---@field err? string the last error, if the last probe failed
---@field code? string its code

---@class tcp_port_used.wait_opts
---@field port? integer the port (or give `ports`)
---@field ports? integer[] wait until every one is in the state
---@field host? string nil: 127.0.0.1 and ::1
---@field in_use? boolean the wanted state (wait_for_status only; the others fix it)
---@field retry_ms? number between probes; nil: from 5 ms growing to 250 ms
---@field timeout_ms? number the whole wait (default 2000)
---@field attempt_ms? number bounds one probe (default 1000)
---@field mode? tcp_port_used.mode default "connect" ("bind" for UDP)
---@field close? tcp_port_used.close default "auto"
---@field proto? tcp_port_used.proto default "tcp"
---@field sleep? fun(ms: number) how to sleep between probes (any scheduler)
---@field on_retry? fun(info: tcp_port_used.retry_info)
---@field yield? boolean false: never yield from a coroutine (default true)
---@field ready? tcp_port_used.ready "used" means ready; not ready is retried
---@field path? string `ready = "http"`: the path, starting with "/" (default "/")
---@field status? tcp_port_used.status `ready = "http"`: default 200..399
---@field user? string `ready = "postgres"`: the role named (default "postgres")
---@field database? string `ready = "postgres"`: default "postgres"
---@field unix? string the path of a Unix-domain socket, instead of port and host

---@class tcp_port_used.many_opts
---@field timeout_ms? number bounds each probe (default 1000)
---@field mode? tcp_port_used.mode default "connect" ("bind" for UDP)
---@field close? tcp_port_used.close default "auto"
---@field proto? tcp_port_used.proto default "tcp"
---@field max_inflight? integer probes in flight at once (default 1024; never more than the open-file limit allows)

---@class tcp_port_used.range
---@field from integer
---@field to integer

---@class tcp_port_used.find_free_opts
---@field host? string nil: every local address, both families
---@field from? integer with `to`: search this range (default 1024 when only `to` is given)
---@field to? integer default 65535 when only `from` is given
---@field exclude? integer[] ports never to return
---@field proto? tcp_port_used.proto default "tcp"; "udp": a port no UDP socket holds

---@class tcp_port_used.owner_opts
---@field port integer 1..65535
---@field host? string nil: any local address
---@field proto? tcp_port_used.proto default "tcp"

---One listening socket, as owner() reports it.
---@class tcp_port_used.owner
---@field address string the local address it listens on
---@field family "inet"|"inet6"
---@field port integer
---@field proto tcp_port_used.proto
---@field uid integer
---@field inode integer
---@field pid? integer the lowest pid holding it; nil where it may not be inspected
---@field pids? integer[] every pid holding it
---@field command? string the holder's command name
---@field reason? string why pid is nil

---@class tcp_port_used
---@field _VERSION string
local M = {}

---Is something listening on the port? `true` in use, `false` free (every
---address refused), `nil, err, code` when it cannot be told (timeout,
---unreachable, EMFILE): an error is never reported as free. With
---`ready`: `true` ready, `false, reason` not ready ("status 503").
---@param port integer
---@param host? string
---@return boolean|nil in_use
---@return string? err the error, or the reason a server is not ready
---@return string? code
---@overload fun(opts: tcp_port_used.check_opts): boolean|nil, string?, string?
function M.check(port, host) end

---Waits until the port is in use. `true`, or `nil, "timeout", last_err,
---code` once `timeout_ms` (default 2000) passes, or `nil, err, code` at
---once for an error retrying cannot mend. Yields inside a coroutine,
---blocks outside one (see the README).
---@param port integer
---@param retry_ms? number
---@param timeout_ms? number
---@return true|nil ok
---@return string? err
---@return string? last_err
---@return string? code
---@overload fun(opts: tcp_port_used.wait_opts): true|nil, string?, string?, string?
function M.wait_until_used(port, retry_ms, timeout_ms) end

---Waits until the port is free; returns as wait_until_used.
---@param port integer
---@param retry_ms? number
---@param timeout_ms? number
---@return true|nil ok
---@return string? err
---@return string? last_err
---@return string? code
---@overload fun(opts: tcp_port_used.wait_opts): true|nil, string?, string?, string?
function M.wait_until_free(port, retry_ms, timeout_ms) end

---wait_until_used on a given host.
---@param port integer
---@param host string|nil
---@param retry_ms? number
---@param timeout_ms? number
---@return true|nil ok
---@return string? err
---@return string? last_err
---@return string? code
---@overload fun(opts: tcp_port_used.wait_opts): true|nil, string?, string?, string?
function M.wait_until_used_on_host(port, host, retry_ms, timeout_ms) end

---wait_until_free on a given host.
---@param port integer
---@param host string|nil
---@param retry_ms? number
---@param timeout_ms? number
---@return true|nil ok
---@return string? err
---@return string? last_err
---@return string? code
---@overload fun(opts: tcp_port_used.wait_opts): true|nil, string?, string?, string?
function M.wait_until_free_on_host(port, host, retry_ms, timeout_ms) end

---Waits until the port is in use (`in_use` true) or free (false).
---@param port integer
---@param host string|nil
---@param in_use boolean
---@param retry_ms? number
---@param timeout_ms? number
---@return true|nil ok
---@return string? err
---@return string? last_err
---@return string? code
---@overload fun(opts: tcp_port_used.wait_opts): true|nil, string?, string?, string?
function M.wait_for_status(port, host, in_use, retry_ms, timeout_ms) end

---Runs functions or suspended coroutines concurrently (each wait inside
---them yields), sleeping in C until the earliest is due. Returns one
---table per argument with its return values, `{ n = k, ... }`.
---@param ... function|thread
---@return { n: integer, [integer]: any }[]
function M.run(...) end

---Probes many ports at once (non-blocking connects, up to `max_inflight`
---in flight, never more than the open-file limit leaves room for).
---`used[port]` is true or false; where a probe failed `used[port]` is nil
---and `errors[port]`, `codes[port]` say why (both empty tables when
---nothing failed). A host that does not resolve: `nil, err, code`.
---@param ports integer[]|tcp_port_used.range
---@param host? string
---@param opts? tcp_port_used.many_opts
---@return table<integer, boolean>|nil used
---@return table<integer, string>|string errors
---@return table<integer, string>|string|nil codes
function M.check_many(ports, host, opts) end

---The list of ports from..to, for check_many.
---@param from integer
---@param to integer
---@return integer[]
function M.range(from, to) end

---A port free now, by bind probes: the lowest free one of `from..to`
---that is not excluded, or, without a range, one the kernel picks. Another
---process may take it before you bind it: bind port 0 yourself and keep
---the socket where you can. `nil, err, code` when none is free.
---@param opts? tcp_port_used.find_free_opts
---@return integer|nil port
---@return string? err
---@return string? code
function M.find_free(opts) end

---Who listens on the port (host nil: any local address): one entry per
---listening socket (for UDP, bound and not connected), an empty list when
---none, `nil, err, code` on failure.
---@param port integer
---@param host? string
---@return tcp_port_used.owner[]|nil owners
---@return string? err
---@return string? code
---@overload fun(opts: tcp_port_used.owner_opts): tcp_port_used.owner[]|nil, string?, string?
function M.owner(port, host) end

return M
