--- The luv transport: connect and bind probes with luv's own handles (TCP
-- handles, and UDP handles for UDP bind probes), so that it works where
-- the C core was never built. It reports outcomes
-- (see verdict.lua) to a callback and decides nothing; tcp_port_used.uv
-- turns the callbacks into awaits and runs probe.lua over them. The
-- streams of readiness exchanges are TCP handles and pipes read with
-- read_start, suspended in the adapter's await while the loop runs.
local hosts = require "tcp_port_used.hosts"
local stream = require "tcp_port_used.transport.stream"

--- Returns the transport for luv module uv and clock now (ms).
return function(uv, now)
  local T = {}

  local ceil, max = math.ceil, math.max

  -- luv reports "ENAME" to callbacks and "ENAME: message" from calls.
  local function code_of(e)
    return tostring(e):match("^([%u%d_]+)") or "EUNKNOWN"
  end

  -- A luv timer counts from the loop's cached time, which is stale when
  -- the loop has not run for a while: refreshed first, it never fires early.
  local function start_timer(t, ms, cb)
    uv.update_time()
    t:start(ceil(max(ms, 0)), 0, cb)
  end
  T.start_timer = start_timer

  local LOOPBACKS = { "127.0.0.1", "::1" }

  -- glibc calls a name unknown when it could not open /etc/hosts for want
  -- of a descriptor: ask for one to tell (as csrc/resolve.c does).
  local function out_of_descriptors()
    local fd, _, code = uv.fs_open("/dev/null", "r", 0)
    if fd then
      uv.fs_close(fd)
      return nil
    end
    if code == "EMFILE" or code == "ENFILE" then return code end
  end

  local function addresses(res)
    local list, seen = {}, {}
    for _, ai in ipairs(res or {}) do
      if (ai.family == "inet" or ai.family == "inet6") and not seen[ai.addr] then
        seen[ai.addr] = true
        list[#list + 1] = ai.addr
      end
    end
    return list
  end

  --- Calls done(list of address literals) or done(nil, code): at once for
  -- a host omitted or literal-like (resolved numerically, never by DNS),
  -- from the loop for a name (uv.getaddrinfo does not block it).
  function T.resolve(host, done)
    if host == nil then return done(LOOPBACKS) end
    local bare = hosts.bare(host)
    if hosts.literal_like(bare) then
      -- a legacy IPv4 form never reaches getaddrinfo, which reads it
      if hosts.not_canonical(bare) then return done(nil, "EAI_NONAME") end
      local res, _, code = uv.getaddrinfo(bare, nil, { socktype = "stream", numerichost = true })
      if not res then return done(nil, code_of(code)) end
      local list = addresses(res)
      if #list == 0 then return done(nil, "EAI_NONAME") end
      return done(list)
    end
    local function fail(e)
      done(nil, out_of_descriptors() or code_of(e))
    end
    local req, _, code = uv.getaddrinfo(bare, nil, { socktype = "stream" }, function(err, res)
      if err then return fail(err) end
      local list = addresses(res)
      if #list == 0 then return fail("EAI_NONAME") end
      done(list)
    end)
    if not req then fail(code) end
  end

  local ipv6
  --- Whether this machine can use IPv6 (::1 can be bound), as the C core asks.
  function T.ipv6()
    if ipv6 == nil then
      local h = uv.new_tcp()
      local ok, _, code = h:bind("::1", 0)
      h:close()
      ipv6 = ok ~= nil or (code ~= "EADDRNOTAVAIL" and code ~= "EAFNOSUPPORT")
    end
    return ipv6
  end

  -- A connect that reached its own socket (TCP's simultaneous open when
  -- the kernel picked the probed port as the source port) is refused.
  local function self_connected(h)
    local me, peer = h:getsockname(), h:getpeername()
    return me ~= nil and peer ~= nil and me.port == peer.port and me.ip == peer.ip
  end

  local function close_reset(h)
    if h.close_reset then h:close_reset() else h:close() end
  end

  local unpack = table.unpack or unpack -- luacheck: ignore 143

  --- Connects to every address at once within budget ms; done(outcome
  -- pairs) as soon as one accepts, else once all have answered or the
  -- budget is spent. close: "graceful" or "reset".
  local function connect_all(addrs, port, budget, close, done)
    local slots, finished = {}, false
    local timer = uv.new_timer()

    local function finish()
      finished = true
      timer:close()
      local out = {}
      for _, s in ipairs(slots) do
        if s.h then
          s.h:close()
          s.h = nil
        end
        if s.state ~= nil then out[#out + 1], out[#out + 2] = s.state, s.address end
      end
      done(unpack(out))
    end

    local function settle()
      if finished then return end
      for _, s in ipairs(slots) do
        if s.state == nil then return end
      end
      finish()
    end

    local function failed(s, code)
      if s.h then
        s.h:close()
        s.h = nil
      end
      if code == "ECONNREFUSED" then s.state = false else s.state = code end
    end

    -- libuv runs due timers before it polls for I/O: a connect that
    -- answered by the deadline gets one more poll (the timer re-armed for
    -- 1 ms) before it counts as timed out, as the C core's poll sees it.
    local looked = false
    local function expire()
      if not looked then
        looked = true
        return start_timer(timer, 1, expire)
      end
      for _, s in ipairs(slots) do
        if s.state == nil then failed(s, "ETIMEDOUT") end
      end
      settle()
    end
    start_timer(timer, max(budget, 1), expire)
    for i, a in ipairs(addrs) do
      local s = { address = a }
      slots[i] = s
      local h, herr = uv.new_tcp()
      if not h then
        failed(s, code_of(herr))
      else
        s.h = h
        local req, _, cerr = h:connect(a, port, function(err)
          -- a handle closed by finish() reports ECANCELED here
          if finished or s.state ~= nil then return end
          if err then
            failed(s, code_of(err))
            return settle()
          end
          s.h = nil
          if self_connected(h) then
            close_reset(h)
            s.state = false
            return settle()
          end
          if close == "reset" then close_reset(h) else h:close() end
          s.state = true
          finish() -- the answer is in: the others no longer matter
        end)
        if not req then failed(s, code_of(cerr)) end
      end
    end
    settle()
  end

  --- connect(host, port, budget, close, done): resolves host and probes
  -- every address; done(outcome pairs) or done(nil, code).
  function T.connect(host, port, budget, close, done)
    T.resolve(host, function(addrs, code)
      if not addrs then return done(nil, code) end
      connect_all(addrs, port, budget, close, done)
    end)
  end

  -- libuv sets SO_REUSEADDR on every TCP bind (as servers do), the very
  -- probe the C core makes; it may hold EADDRINUSE back until listen, but
  -- getsockname reports it, so the probe never listens. On a UDP bind it
  -- sets SO_REUSEADDR only when asked (reuseaddr), and the probe must not
  -- ask: two UDP sockets that both set it share a port.
  local function bind_one(a, port, proto)
    local h = proto == "udp" and uv.new_udp() or uv.new_tcp()
    local ok, e, code = h:bind(a, port, a:find(":", 1, true) and { ipv6only = true } or nil)
    if ok then ok, e, code = h:getsockname() end
    h:close()
    if ok then return false end
    code = code or code_of(e)
    if code == "EADDRINUSE" then return true end
    return code
  end

  --- bind(host, port, proto, done): done(outcome pairs) or done(nil,
  -- code); proto "tcp" or "udp".
  function T.bind(host, port, proto, done)
    T.resolve(host, function(addrs, code)
      if not addrs then return done(nil, code) end
      local out = {}
      for _, a in ipairs(addrs) do
        local s = bind_one(a, port, proto)
        out[#out + 1], out[#out + 2] = s, a
        if s == true then break end
      end
      done(unpack(out))
    end)
  end

  --- Streams ---------------------------------------------------------------

  -- Runs start(finish, timer) under a timer that ends it with ETIMEDOUT at
  -- deadline, through await (the adapter's: it suspends the coroutine
  -- until finish is called). libuv runs due timers before it polls for
  -- I/O, so an expired timer first gives I/O one more poll (1 ms).
  local function bounded(await, deadline, start)
    return await(function(done)
      local timer, finished, looked = uv.new_timer(), false, false
      local function finish(...)
        if finished then return end
        finished = true
        timer:close()
        done(...)
      end
      local function expire()
        if not looked then
          looked = true
          return start_timer(timer, 1, expire)
        end
        finish(nil, "ETIMEDOUT")
      end
      start_timer(timer, max(deadline - now(), 0), expire)
      start(finish)
    end)
  end

  local Stream = stream.class {
    -- one read_start per read, stopped at the first chunk: nothing is
    -- read ahead of what the exchange asks for
    _read = function(self)
      local h = self.h
      local data, code = bounded(self.await, self.deadline, function(finish)
        local ok, _, err = h:read_start(function(e, chunk)
          if e then return finish(nil, code_of(e)) end
          finish(chunk or "")
        end)
        if not ok then finish(nil, code_of(err)) end
      end)
      h:read_stop()
      return data, code
    end,
    _write = function(self, data)
      return bounded(self.await, self.deadline, function(finish)
        local req, _, err = self.h:write(data, function(e)
          if e then return finish(nil, code_of(e)) end
          finish(true)
        end)
        if not req then finish(nil, code_of(err)) end
      end)
    end,
    _close = function(self, how)
      local h = self.h
      if h:is_closing() then return end
      if how == "reset" then close_reset(h) else h:close() end
    end,
  }

  --- open(address, port, unix, deadline, await): a stream connected to
  -- address:port (a TCP handle) or to the Unix-domain socket at path unix
  -- (a pipe); else nil and false (refused) or a code. await is the
  -- adapter's (see bounded).
  function T.open(address, port, unix, deadline, await)
    local h, herr, _
    if unix then h, _, herr = uv.new_pipe(false) else h, _, herr = uv.new_tcp() end
    if not h then return nil, code_of(herr) end
    local state = bounded(await, deadline, function(finish)
      local function connected(err)
        if err then return finish(code_of(err)) end
        if not unix and self_connected(h) then
          close_reset(h)
          return finish(false)
        end
        finish(true)
      end
      local req, _, err
      if unix then
        req, _, err = h:connect(unix, connected)
      else
        req, _, err = h:connect(address, port, connected)
      end
      if not req then finish(code_of(err)) end
    end)
    if state ~= true then
      if not h:is_closing() then h:close() end
      if state == nil then return nil, "ETIMEDOUT" end
      if state == "ECONNREFUSED" then return nil, false end
      return nil, state
    end
    return stream.new(Stream, { h = h, await = await, deadline = deadline })
  end

  T.now = now
  return T
end
