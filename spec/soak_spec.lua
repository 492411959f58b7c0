local H = require "helpers"

-- 1,000,000 probes (fewer under valgrind and the sanitizers, through
-- TPU_SOAK_PROBES) mixing open, refused and failing targets, listen-mode
-- checks (each a netlink socket of its own) and UDP probes in modes bind
-- (held and free: a free port is bound by the probe) and listen, with now
-- and then a find_free and a check_many of UDP ports, in a child
-- process of its own: what other specs leave behind in this process (luv's
-- threads, nginx and nvim children) must not count, and neither may they
-- hide anything.
local PROBES = tonumber(os.getenv("TPU_SOAK_PROBES")) or 1000000

local CHILD = [[
local tpu, H = require "tcp_port_used", require "helpers"
local PROBES = %d

local function rss_kb()
  -- read whole and closed at once: leaving io.lines early would hold the
  -- file open until the collector runs, and count as a leaked descriptor
  local f = assert(io.open("/proc/self/status"))
  local status = f:read("*a")
  f:close()
  return tonumber(status:match("VmRSS:%%s+(%%d+)"))
end

local l = H.listen("127.0.0.1", 0, 4096)
local r = H.reserve()
local b = H.full_backlog()
local check = tpu.check
local open_opts = { port = l.port, host = "127.0.0.1" }
local refused_opts = { port = r.port, host = "127.0.0.1" }
local failing_opts = { port = b.port, host = "127.0.0.1", timeout_ms = 0 }
local listen_opts = { port = l.port, mode = "listen" }
local u, free_udp = H.udp("127.0.0.1"), H.free_udp_port()
local udp_held_opts = { port = u.port, proto = "udp" }
local udp_free_opts = { port = free_udp, host = "127.0.0.1", proto = "udp", mode = "bind" }
local udp_listen_opts = { port = u.port, proto = "udp", mode = "listen" }
local udp_many_opts = { proto = "udp", mode = "listen" }
local PER_ROUND = 7
local function round()
  assert(check(open_opts) == true)
  assert(check(refused_opts) == false)
  local ok, _, code = check(failing_opts)
  assert(ok == nil and code == "ETIMEDOUT", code)
  assert(check(listen_opts) == H.LISTENING)
  assert(check(udp_held_opts) == true)
  assert(check(udp_free_opts) == false)
  assert(check(udp_listen_opts) == H.LISTENING)
end
local function now_and_then()
  assert(tpu.find_free { proto = "udp" })
  assert(H.portable or tpu.check_many({ u.port, free_udp }, nil, udp_many_opts)[u.port] == true)
end
-- warm up, so that what the runtime allocates once is not counted
for _ = 1, 2000 do round(); l.drain() end
now_and_then()
collectgarbage()
collectgarbage()
local fds, rss, fd_list = H.fd_count(), rss_kb(), H.fd_list()
for i = 1, math.floor(PROBES / PER_ROUND) do
  round()
  if i %% 64 == 0 then
    now_and_then()
    l.drain()
    -- The accepted sockets are the spec's, not the module's: Lua 5.3's
    -- incremental collector falls far behind luasocket's userdata (RSS
    -- reached 1.7 GB), so they are collected here, to measure only what
    -- the probes keep.
    collectgarbage()
  end
end
l.drain()
collectgarbage()
collectgarbage()
print("fds", fds, H.fd_count())
print("rss", rss, rss_kb())
print("time_wait", H.time_wait_to(l.port))
if H.fd_count() ~= fds then print("fd_list", fd_list, H.fd_list()) end
]]

describe("soak", function()
  it("grows neither fds nor memory over " .. PROBES .. " probes, nor exhausts ephemeral ports", function()
    local cmd = H.lua_cmd(CHILD:format(PROBES))
    if os.getenv("TPU_RUNTIME") == "valgrind" then
      cmd = "valgrind --quiet --error-exitcode=97 " .. cmd
    end
    -- in a network namespace of its own where one can be made: its million
    -- connections, their ephemeral ports and TIME_WAIT entries stay out of
    -- the specs that run beside it (scripts/test.sh overlaps runs), whose
    -- listen-mode queries would read every one of them
    if H.can_unshare() then cmd = "unshare -n sh -c " .. H.quote("ip link set lo up; " .. cmd) end
    local out, rc = H.run(cmd .. " 2>&1")
    assert.equals(0, rc, out)
    local fds, fds_after = out:match("fds\t(%d+)\t(%d+)")
    assert.equals(fds, fds_after, out)
    local rss, rss_after = out:match("rss\t(%d+)\t(%d+)")
    rss, rss_after = tonumber(rss), tonumber(rss_after)
    -- (ASan holds freed memory in quarantine, so RSS says nothing there;
    -- LeakSanitizer checks leaks in that run instead)
    if os.getenv("TPU_RUNTIME") ~= "asan" then
      assert.is_true(rss_after - rss < 4096, ("RSS grew from %d kB to %d kB"):format(rss, rss_after))
    end
    -- graceful closes are capped near 100 a second, so TIME_WAIT entries
    -- stay far below the ~28,000 ephemeral ports
    local tw = tonumber(out:match("time_wait\t(%d+)"))
    assert.is_true(tw < 12000, tw .. " TIME_WAIT entries")
  end)
end)
