-- Argo CD custom health check for payments.paykube.dev/PaymentSession.
--
-- Install it in the argocd-cm ConfigMap (see docs/gitops.md):
--   resource.customizations.health.payments.paykube.dev_PaymentSession: |
--     <this file>
--
-- Argo CD runs it with `obj` = the live object (gopher-lua, Lua 5.1 syntax) and reads
-- `status` (Healthy, Progressing, Degraded, Suspended, Missing, Unknown) and `message`.
--
--   no status yet / Pending / Open / Processing  -> Progressing (the payment is under way;
--                                                   with a retryable error the message says
--                                                   which, the operator is retrying)
--   a non-retryable error before the end         -> Degraded (a person must act)
--   status older than the spec (observedGeneration < generation) -> Progressing
--   Paid                                         -> Healthy
--   Canceled, Expired                            -> Healthy: ended as requested (spec.cancel
--                                                   or deletion) or unpaid in time; nothing
--                                                   is broken and nothing will change, which
--                                                   is not what Suspended ("paused, resume
--                                                   me") means
--   Failed                                       -> Degraded, with the error and its
--                                                   explanation
--   any other phase                              -> Unknown
local hs = {}

local function describe(err)
  if err == nil then
    return ""
  end
  local text = ""
  if err.code ~= nil then
    text = err.code
  end
  if err.providerCode ~= nil then
    text = text .. " (" .. err.providerCode .. ")"
  end
  if err.message ~= nil then
    text = text .. ": " .. err.message
  end
  if err.explanation ~= nil then
    text = text .. " - " .. err.explanation
  end
  return text
end

local function amount(status)
  if status.amountTotal ~= nil and status.currency ~= nil then
    return " " .. tostring(status.amountTotal) .. " " .. status.currency
  end
  return ""
end

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the paykube operator to create the checkout session"
  return hs
end

local status = obj.status
local phase = status.phase

if phase == "Paid" then
  hs.status = "Healthy"
  hs.message = "Paid" .. amount(status)
  return hs
end
if phase == "Canceled" then
  hs.status = "Healthy"
  hs.message = "Canceled: the checkout session was expired on request"
  return hs
end
if phase == "Expired" then
  hs.status = "Healthy"
  hs.message = "Expired: the customer did not pay before the session expired"
  return hs
end
if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = "Failed: " .. describe(status.error)
  return hs
end

if phase == "Pending" or phase == "Open" or phase == "Processing" then
  if status.error ~= nil and status.error.retryable == false then
    hs.status = "Degraded"
    hs.message = phase .. ": " .. describe(status.error)
    return hs
  end
  local generation = obj.metadata and obj.metadata.generation
  if generation ~= nil and (status.observedGeneration == nil
      or status.observedGeneration < generation) then
    hs.status = "Progressing"
    hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
    return hs
  end
  hs.status = "Progressing"
  if status.error ~= nil then
    hs.message = phase .. " (retrying): " .. describe(status.error)
  elseif phase == "Pending" then
    hs.message = "Pending: creating the checkout session"
  elseif phase == "Open" then
    hs.message = "Open: waiting for the customer to pay"
    if status.expiresAt ~= nil then
      hs.message = hs.message .. " (expires " .. status.expiresAt .. ")"
    end
  else
    hs.message = "Processing: the payment is settling" .. amount(status)
  end
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown phase " .. tostring(phase)
return hs
