-- Argo CD health check of securebuild.dev/ImageBuild.
--
-- Healthy:     Ready=True for the current generation (status.observedGeneration and the Ready
--              condition's observedGeneration equal metadata.generation).
-- Progressing: no status yet, a status that describes an older generation, Reconciling=True
--              (a build is queued, pending or running), or Ready not yet decided.
-- Degraded:    Stalled=True (the last build failed; a spec change or a rebuild request
--              builds again), or Ready=False with a failure reason.
-- Messages come from the conditions, as "Reason: message".
--
-- Install it as the argocd-cm key resource.customizations.health.securebuild.dev_ImageBuild
-- (docs/install.md). Written for Argo CD's Lua 5.1 interpreter, using only ipairs and tostring.

local hs = {}

-- Ready=False reasons that mean a build is on its way rather than failed.
local progress_reasons = { BuildPending = true, Building = true }

local function find_condition(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if condition.type == kind then
      return condition
    end
  end
  return nil
end

local function describe(condition, fallback)
  local message = condition.message
  if message == nil or message == "" then
    message = fallback
  end
  if condition.reason ~= nil and condition.reason ~= "" then
    return condition.reason .. ": " .. message
  end
  return message
end

local function generation_text(value)
  if value == nil then
    return "none"
  end
  return tostring(value)
end

local status = obj.status
local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end

if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation_text(generation)
    .. " (status describes " .. generation_text(status.observedGeneration) .. ")"
  return hs
end

local reconciling = find_condition(status.conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "Building")
  return hs
end

local stalled = find_condition(status.conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "The build failed and will not be retried until the spec changes")
  return hs
end

local ready = find_condition(status.conditions, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Ready describes generation " .. generation_text(ready.observedGeneration)
    .. ", not " .. generation_text(generation)
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Built")
  return hs
end

if ready.status == "False" and ready.reason ~= nil and ready.reason ~= ""
    and not progress_reasons[ready.reason] then
  hs.status = "Degraded"
  hs.message = describe(ready, "The last build failed")
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready, "Waiting for the build")
return hs
