---@meta tcp_port_used.ngx
-- LuaLS definitions for the tcp_port_used.ngx adapter. The option tables and
-- aliases are those of types/tcp_port_used.lua.

---OpenResty: probes through cosockets and sleeps with ngx.sleep in the phases that have them (UDP ports and modes bind and listen through the C core, which never waits); blocks in init_by_lua; on_used/on_free run the wait in an ngx.timer.at handler (init_worker_by_lua).
---@class tcp_port_used.ngx
---@field _VERSION string
local M = {}

---As tcp_port_used.check.
---@param port integer
---@param host? string
---@return boolean|nil in_use
---@return string? err
---@return string? code
---@overload fun(opts: tcp_port_used.check_opts): boolean|nil, string?, string?
function M.check(port, host) end

---As tcp_port_used.wait_until_used.
---@param port integer
---@param retry_ms? number
---@param timeout_ms? number
---@return true|nil ok
---@return string? err
---@return string? last_err
---@return string? code
---@overload fun(opts: tcp_port_used.wait_opts): true|nil, string?, string?, string?
function M.wait_until_used(port, retry_ms, timeout_ms) end

---As tcp_port_used.wait_until_free.
---@param port integer
---@param retry_ms? number
---@param timeout_ms? number
---@return true|nil ok
---@return string? err
---@return string? last_err
---@return string? code
---@overload fun(opts: tcp_port_used.wait_opts): true|nil, string?, string?, string?
function M.wait_until_free(port, retry_ms, timeout_ms) end

---As tcp_port_used.wait_until_used_on_host.
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

---As tcp_port_used.wait_until_free_on_host.
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

---As tcp_port_used.wait_for_status.
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

---Waits until the port is in use without blocking, then calls cb once,
---from the host's loop and never before on_used has returned, with what
---wait_until_used would return.
---@param port integer
---@param opts tcp_port_used.wait_opts|nil
---@param cb tcp_port_used.callback
---@overload fun(opts: tcp_port_used.wait_opts, cb: tcp_port_used.callback)
function M.on_used(port, opts, cb) end

---As on_used, until the port is free.
---@param port integer
---@param opts tcp_port_used.wait_opts|nil
---@param cb tcp_port_used.callback
---@overload fun(opts: tcp_port_used.wait_opts, cb: tcp_port_used.callback)
function M.on_free(port, opts, cb) end

return M
