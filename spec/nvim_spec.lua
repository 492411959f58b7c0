-- tcp_port_used.uv inside a real headless Neovim (nvim --headless -u NONE).
-- Neovim's Lua is LuaJIT whichever runtime runs busted: the child loads
-- the LuaJIT build of the core, or, for the plugin-copied-without-a-
-- compiler case, none at all. The script prints its findings on stdout.
local H = require "helpers"

local function has_nvim()
  local _, rc = H.run("command -v nvim >/dev/null 2>&1")
  return rc == 0
end

local nvim = H.nvim

-- Shared by the scripts: a listener that starts after `ms`, a 5 ms timer
-- whose every tick also schedules a vim.schedule callback (the editor's
-- event queue), and a line printer.
local PRELUDE = [[
  local uv = vim.uv or vim.loop
  local ad = require "tcp_port_used.uv"
  local function say(...)
    local t = {}
    for i = 1, select("#", ...) do t[i] = tostring((select(i, ...))) end
    io.stdout:write(table.concat(t, " "), "\n")
  end
  local function listen_later(ms)
    local s = uv.new_tcp()
    assert(s:bind("127.0.0.1", 0))
    local t = uv.new_timer()
    uv.update_time()
    t:start(ms, 0, function()
      t:close()
      s:listen(64, function() local c = uv.new_tcp(); s:accept(c); c:close() end)
    end)
    return s:getsockname().port, s
  end
  local ticks, scheduled = 0, 0
  local ticker = uv.new_timer()
  ticker:start(5, 5, function()
    ticks = ticks + 1
    vim.schedule(function() scheduled = scheduled + 1 end)
  end)
]]

describe("tcp_port_used.uv in Neovim", function()
  if not has_nvim() then
    pending("nvim is not installed")
    return
  end

  it("waits for a port that opens later while timers and scheduled callbacks run", function()
    local out, rc = nvim(PRELUDE .. [[
      say("core", ad.has_core)
      -- the blocking form on the main thread: vim.wait keeps the events flowing
      local port, s = listen_later(300)
      local ok, err = ad.wait_until_used { port = port, timeout_ms = 10000 }
      say("blocking", ok, err, ticks, scheduled)

      -- the callback form: runs once, later, where the editor API works
      local port2, s2 = listen_later(300)
      local returned, calls = false, 0
      ticks, scheduled = 0, 0
      ad.on_used(port2, { timeout_ms = 10000 }, function(ok2, err2)
        calls = calls + 1
        say("callback", ok2, err2, returned, vim.in_fast_event(),
          pcall(vim.api.nvim_buf_set_lines, 0, 0, -1, false, { "ready" }), ticks, scheduled)
      end)
      returned = true

      -- the awaitable form: a coroutine suspended and resumed through vim.schedule
      local port3, s3 = listen_later(300)
      local co_done = false
      coroutine.wrap(function()
        local a, b = ad.wait_until_used(port3, nil, 10000)
        local c = ad.check(port3)
        local d, _, code = ad.wait_until_free(port3, 20, 100)
        say("coroutine", a, b, c, d, code, vim.in_fast_event(),
          pcall(vim.api.nvim_get_current_buf))
        co_done = true
      end)()
      say("started", co_done)
      vim.wait(10000, function() return calls > 0 and co_done end, 10)
      say("calls", calls, vim.api.nvim_buf_get_lines(0, 0, -1, false)[1])
      ticker:close(); s:close(); s2:close(); s3:close()
    ]])
    assert.equals(0, rc, out)
    assert.matches("core true\n", out, 1, true)
    local ok, ticks, scheduled = out:match("blocking (%S+) nil (%d+) (%d+)\n")
    assert.equals("true", ok, out)
    -- 5 ms ticks over 300 ms: a frozen editor would show none
    assert.is_true(tonumber(ticks) >= 20 and tonumber(scheduled) >= 20, out)
    local cb_ticks, cb_sched = out:match("callback true nil true false true (%d+) (%d+)\n")
    assert.is_truthy(cb_ticks, out)
    assert.is_true(tonumber(cb_ticks) >= 20 and tonumber(cb_sched) >= 20, out)
    assert.matches("started false\n", out, 1, true)
    assert.matches("coroutine true nil true nil ETIMEDOUT false true", out, 1, true)
    assert.matches("calls 1 ready\n", out, 1, true)
  end)

  it("works without the C core, probing with luv alone", function()
    local out, rc = nvim(PRELUDE .. [[
      say("core", ad.has_core, pcall(require, "tcp_port_used"))
      local port, s = listen_later(200)
      local got
      ad.on_used({ port = port, timeout_ms = 10000 }, function(ok, err) got = { ok, err } end)
      vim.wait(10000, function() return got ~= nil end, 10)
      say("callback", got[1], got[2], ticks >= 20)
      say("check", ad.check(port), ad.check { port = port, mode = "bind" })
      local free = uv.new_tcp()
      assert(free:bind("127.0.0.1", 0))
      say("refused", ad.check(free:getsockname().port))
      free:close()
      ticker:close(); s:close()
    ]], true)
    assert.equals(0, rc, out)
    assert.matches("core false false", out, 1, true)
    assert.matches("callback true nil true\n", out, 1, true)
    assert.matches("check true true\n", out, 1, true)
    assert.matches("refused false\n", out, 1, true)
  end)

  -- A game server's UDP port, bound by a luv timer after ms; and the
  -- descriptors open in nvim.
  local UDP_PRELUDE = PRELUDE .. [[
    local function udp_later(ms)
      local probe = uv.new_udp()
      assert(probe:bind("127.0.0.1", 0))
      local port = probe:getsockname().port
      probe:close()
      local h, t = uv.new_udp(), uv.new_timer()
      uv.update_time()
      t:start(ms, 0, function()
        t:close()
        assert(h:bind("127.0.0.1", port))
      end)
      return port, h
    end
    local function fds()
      local n, dir = 0, uv.fs_scandir("/proc/self/fd")
      while uv.fs_scandir_next(dir) do n = n + 1 end
      return n
    end
  ]]

  for _, without_core in ipairs { false, true } do
    local modes = without_core and { "bind" } or { "bind", "listen" }
    it("waits for a UDP port bound 300 ms later" .. (without_core and ", without the C core" or
        ", in modes bind and listen"), function()
      local out, rc = nvim(UDP_PRELUDE .. string.format([[
        say("core", ad.has_core)
        for _, mode in ipairs { %s } do
          ticks, scheduled = 0, 0
          local port, h = udp_later(300)
          local ok, err = ad.wait_until_used { port = port, proto = "udp", mode = mode, timeout_ms = 10000 }
          say("blocking", mode, ok, err, ticks >= 20)
          h:close()
          local port2, h2 = udp_later(300)
          local got
          ad.on_used({ port = port2, proto = "udp", mode = mode, timeout_ms = 10000 }, function(ok2, err2)
            got = { ok2, err2, vim.in_fast_event(), pcall(vim.api.nvim_get_current_buf) }
          end)
          vim.wait(10000, function() return got ~= nil end, 10)
          say("callback", mode, got[1], got[2], got[3], got[4])
          local before = fds()
          for _ = 1, 50 do
            assert(ad.check { port = port2, proto = "udp", mode = mode } == true)
          end
          local used_grew = fds() - before
          h2:close()
          say("free", mode, ad.check { port = port2, proto = "udp", mode = mode })
          before = fds()
          for _ = 1, 50 do
            assert(ad.check { port = port2, proto = "udp", mode = mode } == false)
          end
          say("fds", mode, used_grew, fds() - before)
        end
        ticker:close()
      ]], '"' .. table.concat(modes, '", "') .. '"'), without_core)
      assert.equals(0, rc, out)
      assert.matches("core " .. tostring(not without_core) .. "\n", out, 1, true)
      for _, mode in ipairs(modes) do
        assert.matches("blocking " .. mode .. " true nil true\n", out, 1, true)
        assert.matches("callback " .. mode .. " true nil false true\n", out, 1, true)
        assert.matches("free " .. mode .. " false\n", out, 1, true)
        assert.matches("fds " .. mode .. " 0 0\n", out, 1, true)
      end
    end)
  end

  it("asks a real redis-server if it is ready, over TCP and its socket, with and without the core", function()
    local r, why = require("servers").redis_start("--unixsocket %DIR%/redis.sock --unixsocketperm 777")
    if not r then return pending(why) end
    finally(function() require("servers").redis_stop(r) end)
    local script = PRELUDE .. string.format([[
      say("core", ad.has_core)
      say("blocking", ad.check { port = %d, host = "127.0.0.1", ready = "redis" },
        ad.check { unix = %q, ready = "redis" }, ad.check { port = %d, ready = "http" })
      local got
      ad.on_used({ unix = %q, ready = "redis" }, function(ok, err) got = { ok, err } end)
      vim.wait(10000, function() return got ~= nil end, 10)
      say("callback", got[1], got[2])
      ticker:close()
    ]], r.port, r.dir .. "/redis.sock", r.port, r.dir .. "/redis.sock")
    for _, without_core in ipairs { false, true } do
      local out, rc = nvim(script, without_core)
      assert.equals(0, rc, out)
      assert.matches("core " .. tostring(not without_core) .. "\n", out)
      assert.matches("blocking true true nil receive 127.0.0.1:" .. r.port ..
        ": connection closed by the server ECONNRESET\n", out, 1, true)
      assert.matches("callback true nil\n", out, 1, true)
    end
  end)

  it("refuses to block inside a luv callback (a fast event)", function()
    local out, rc = nvim(PRELUDE .. [[
      local res
      local t = uv.new_timer()
      t:start(0, 0, function()
        t:close()
        res = { pcall(ad.wait_until_used, 1, nil, 100) }
      end)
      vim.wait(5000, function() return res ~= nil end, 10)
      say("fast", res[1], res[2])
      ticker:close()
    ]])
    assert.equals(0, rc, out)
    assert.matches("fast false [^\n]*wait_until_used: cannot block inside a luv callback", out)
  end)

  -- SPEC "adapters": the callback runs exactly once, where the editor's
  -- API may be called, even when the caller's on_retry raises
  it("hands an error of on_retry to the callback, outside a fast event", function()
    local out, rc = nvim(PRELUDE .. [[
      local free = uv.new_tcp()
      assert(free:bind("127.0.0.1", 0))
      local calls, got = 0, nil
      local returned = ad.on_used({ port = free:getsockname().port, host = "127.0.0.1", timeout_ms = 5000,
                                    retry_ms = 20, on_retry = function() error("gave up", 0) end },
        function(ok, err)
          calls = calls + 1
          got = { ok, err, vim.in_fast_event(), vim.api.nvim_get_current_buf() > 0 }
        end)
      vim.wait(10000, function() return got ~= nil end, 10)
      say("returned", returned, "calls", calls, "got", got[1], got[2], got[3], got[4])
      ticker:close(); free:close()
    ]])
    assert.equals(0, rc, out)
    assert.matches("returned true calls 1 got nil gave up false true\n", out, 1, true)
  end)
end)
