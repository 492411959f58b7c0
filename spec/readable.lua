--- What the servers and processes that the specs start as other users
-- read from this checkout (nginx's workers, a Lua child run as nobody),
-- copied into a directory that any user may read: a checkout in a 0700
-- directory (/root in a container) is closed to them
-- (scripts/test-0700.sh proves it).
local H = require "helpers"

local R = {}

-- The directory of the runtime's core, from H.cpath (".../build/5.4/?.so").
local function core_dir()
  return (H.cpath:gsub(";.*$", ""):match("^(.*)/%?%.so$"))
end

--- Copies the module's Lua files, the specs' Lua files (spec/nginx's
-- apps among them), nginx's core (build/jit) and this runtime's core
-- into dir/tree, readable by all, and opens dir to all; returns the
-- copy's root and the package.cpath entry of this runtime's core there.
-- The copy goes when dir does.
function R.tree(dir)
  local tree = dir .. "/tree"
  local cores = { H.root .. "/build/jit" }
  local own = core_dir()
  if own and own:sub(1, 1) ~= "/" then own = H.root .. "/" .. own end
  if own and own ~= cores[1] then cores[2] = own end
  local cmd = { "mkdir -p " .. H.quote(tree .. "/build") .. " " .. H.quote(tree .. "/spec"),
    "cp -R " .. H.quote(H.root .. "/lua") .. " " .. H.quote(tree .. "/"),
    "cp " .. H.quote(H.root .. "/spec") .. "/*.lua " .. H.quote(tree .. "/spec/"),
    "cp -R " .. H.quote(H.root .. "/spec/nginx") .. " " .. H.quote(tree .. "/spec/") }
  for _, c in ipairs(cores) do
    cmd[#cmd + 1] = "{ [ ! -d " .. H.quote(c) .. " ] || cp -R " .. H.quote(c) .. " " ..
      H.quote(tree .. "/build/") .. "; }"
  end
  cmd[#cmd + 1] = "chmod -R a+rX " .. H.quote(tree)
  cmd[#cmd + 1] = "chmod a+rx " .. H.quote(dir)
  local out, rc = H.run(table.concat(cmd, " && ") .. " 2>&1")
  assert(rc == 0, "copying the checkout to " .. tree .. " failed: " .. tostring(out))
  return tree, tree .. "/build/" .. (own and own:match("[^/]+$") or "jit") .. "/?.so"
end

return R
