local H = require "helpers"
local C = require "calls"
local T = require "transports"

-- Each fault runs in a child process of its own: a signal storm preloaded
-- into it, or a network namespace made for it (without IPv6, or with a
-- port whose SYNs are dropped). All traffic stays on that child's loopback.

local function lua_with_preload(extra, code)
  local preload = os.getenv("TPU_PRELOAD")
  preload = (preload and preload ~= "" and (preload .. ":") or "") .. extra
  local saved = H.lua_cmd(code)
  -- H.lua_cmd may have put the sanitizer runtimes in front already
  saved = saved:gsub("^env LD_PRELOAD=%b'' ", "")
  return "env LD_PRELOAD=" .. H.quote(preload) .. " " .. saved
end

describe("faults", function()
  it("a SIGALRM storm at 1 kHz neither cuts sleeps short nor breaks probes and waits", function()
    local storm = H.root .. "/build/test/sigstorm.so"
    assert.is_truthy(io.open(storm), "make build/test/sigstorm.so first")
    local out, rc = H.run(lua_with_preload(storm, [[
      local tpu, core, H = require "tcp_port_used", require "tcp_port_used.core", require "helpers"
      local l, r = H.listen(), H.reserve()
      local t0 = core.now(); core.sleep(300); print("sleep", core.now() - t0)
      print("open", tpu.check(l.port, "127.0.0.1"))
      print("refused", tpu.check(r.port, "127.0.0.1"))
      t0 = core.now()
      local ok, _, code = tpu.wait_until_used(r.port, 20, 300)
      print("wait", ok, code, core.now() - t0)
      local b = H.full_backlog()
      t0 = core.now()
      local _, _, code = tpu.check { port = b.port, host = "127.0.0.1", timeout_ms = 200 }
      print("attempt", code, core.now() - t0)
      print("used", tpu.wait_until_used { port = l.port, timeout_ms = 1000 })]]) .. " 2>&1")
    assert.equals(0, rc, out)
    local slept = tonumber(out:match("sleep\t([%d.]+)"))
    assert.is_true(slept >= 300 and slept < 1000, out)
    assert.matches("open\ttrue", out)
    assert.matches("refused\tfalse", out)
    local waited = tonumber(out:match("wait\tnil\tETIMEDOUT\t([%d.]+)"))
    assert.is_true(waited and waited >= 300 and waited < 1500, out)
    local attempt = tonumber(out:match("attempt\tETIMEDOUT\t([%d.]+)"))
    assert.is_true(attempt and attempt >= 200 and attempt < 1500, out)
    assert.matches("used\ttrue", out)
    local signals = tonumber(out:match("sigstorm: (%d+) signals"))
    -- (about 1000 a second for over a second; a busy machine, as under the
    -- suite's overlapping runs, merges pending ones)
    assert.is_true(signals and signals > 200, "the storm ran: " .. out)
  end)

  it("a namespace without IPv6 still answers for IPv4 and reports IPv6 as an error", function()
    if not H.can_unshare() then
      pending("no network namespaces here")
      return
    end
    local out = H.lua_in_netns([[
      local tpu, core, H = require "tcp_port_used", require "tcp_port_used.core", require "helpers"
      local l, r = H.listen(), H.reserve()
      print("ipv6", core.ipv6())
      print("default", tpu.check(l.port), tpu.check(r.port))
      print("v4", tpu.check(l.port, "127.0.0.1"))
      print("v6", tpu.check(l.port, "::1"))
      print("bind", tpu.check { port = r.port, mode = "bind" })
      print("wait", tpu.wait_until_used { port = l.port, host = "::1", timeout_ms = 2000 })]],
      "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/lo/disable_ipv6; ")
    if out:match("ipv6\ttrue") then
      pending("IPv6 could not be disabled in the namespace: " .. out)
      return
    end
    assert.matches("ipv6\tfalse", out)
    assert.matches("default\ttrue\tfalse", out)
    assert.matches("v4\ttrue", out)
    assert.matches("v6\tnil\tconnect %[::1%]:%d+: no address of a family this machine has\tEAFNOSUPPORT", out)
    assert.matches("bind\ttrue", out)
    -- a family that is missing is permanent: the wait returns at once
    assert.matches("wait\tnil\t[^\n]*EAFNOSUPPORT", out)
  end)

  it("a port whose SYNs are dropped times out per attempt, and a wait keeps retrying it", function()
    if not H.can_unshare() then
      pending("no network namespaces here")
      return
    end
    local _, nft = H.run("command -v nft >/dev/null")
    if nft ~= 0 then
      pending("nft is not installed")
      return
    end
    local out = H.lua_in_netns([[
      local tpu, core, H = require "tcp_port_used", require "tcp_port_used.core", require "helpers"
      local l = H.listen()
      assert(os.execute("nft add table inet tpu && nft add chain inet tpu in " ..
        "'{ type filter hook input priority 0; }' && nft add rule inet tpu in tcp dport " ..
        l.port .. " drop"))
      local t0 = core.now()
      local ok, err, code = tpu.check { port = l.port, host = "127.0.0.1", timeout_ms = 200 }
      print("check", ok, code, core.now() - t0)
      local n = 0
      t0 = core.now()
      ok, err, code = tpu.wait_until_used { port = l.port, host = "127.0.0.1", attempt_ms = 100,
        retry_ms = 20, timeout_ms = 700, on_retry = function() n = n + 1 end }
      print("wait", ok, code, n, core.now() - t0)]])
    local took = tonumber(out:match("check\tnil\tETIMEDOUT\t([%d.]+)"))
    assert.is_true(took and took >= 200 and took < 1500, out)
    local retries, waited = out:match("wait\tnil\tETIMEDOUT\t(%d+)\t([%d.]+)")
    assert.is_true(tonumber(retries) and tonumber(retries) >= 3, out)
    assert.is_true(tonumber(waited) >= 700 and tonumber(waited) < 2500, out)
  end)

  -- SPEC "check": out of descriptors while resolving a name is EMFILE or
  -- ENFILE, not "name not known" (glibc calls a name unknown when it
  -- cannot open /etc/hosts). Every descriptor is taken first (children
  -- with a small limit; in nginx, the worker's), then a name is probed.
  describe("out of descriptors while resolving a name", function()
    local l
    setup(function() l = H.listen() end)
    teardown(function() l.close() end)

    for _, kind in ipairs(T.KINDS) do
      it("is too many open files, through " .. T.NAMES[kind], function()
        local calls = {}
        local modes = { "connect", "bind", "any", "listen" }
        -- without the C core listen mode is an argument error (see uv_spec)
        if kind == "uv_nocore" then modes[4] = nil end
        for _, m in ipairs(modes) do
          calls[#calls + 1] = { fn = "check", args = { { port = l.port, host = "localhost", mode = m } },
                                n = 1, label = "check localhost mode=" .. m }
        end
        calls[#calls + 1] = { fn = "check", args = { l.port, "localhost" }, n = 2,
                              label = "check(port, \"localhost\")" }
        if kind == "core" then
          calls[#calls + 1] = { fn = "check_many", args = { { l.port }, "localhost" }, n = 2,
                                pick = l.port, label = "check_many localhost" }
        end
        local r, why = T.open(kind, { fill = true, ulimit = 32 })
        if not r then return pending(why) end
        local ok, out = pcall(r.run, r, calls)
        r:close()
        assert(ok, out)
        assert.is_true(out.filled > 0, "no descriptor was taken")
        for i, c in ipairs(calls) do
          local o = out[i]
          local shown = c.label .. ": " .. C.show(o)
          assert.equals("nil", o.v, shown)
          assert.is_truthy(o.code == "EMFILE" or o.code == "ENFILE", shown)
          assert.matches("too many open files", o.err, 1, true, shown)
        end
      end)
    end
  end)
end)
