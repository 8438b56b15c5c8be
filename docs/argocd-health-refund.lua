-- Argo CD custom health check for payments.paykube.dev/PaymentRefund.
--
-- Install it in the argocd-cm ConfigMap (see docs/gitops.md):
--   resource.customizations.health.payments.paykube.dev_PaymentRefund: |
--     <this file>
--
-- Argo CD runs it with `obj` = the live object (gopher-lua, Lua 5.1 syntax) and reads
-- `status` (Healthy, Progressing, Degraded, Suspended, Missing, Unknown) and `message`.
--
--   no status yet / Pending                -> Progressing (the amount is reserved on the
--                                             payment, then the refund created; with a
--                                             retryable error the message says which)
--   a non-retryable error before the end   -> Degraded (a refusal: SessionNotPaid,
--                                             AmountExceedsRefundable, ...; a person must
--                                             act)
--   RequiresAction                         -> Suspended (the PSP waits for the customer's
--                                             details, e.g. a bank account)
--   Succeeded                              -> Healthy (the money went back)
--   Failed                                 -> Degraded, with the error
--   Canceled                               -> Degraded: canceled at the PSP, no money went
--                                             back; unlike a canceled payment, nobody asked
--                                             for it through paykube
--   any other phase                        -> Unknown
-- A webhook's report of Failed or Canceled that the operator has not confirmed yet
-- (`status.unconfirmed`) keeps the phase, and the message says it is being checked.
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
  if status.amount ~= nil and status.currency ~= nil then
    return " " .. tostring(status.amount) .. " " .. status.currency
  end
  return ""
end

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the paykube operator to reserve the amount and create the refund"
  return hs
end

local status = obj.status
local phase = status.phase
local checking = ""
if status.unconfirmed ~= nil and status.unconfirmed.phase ~= nil then
  checking = " (a reported " .. status.unconfirmed.phase .. " is being confirmed)"
end

if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = "Succeeded:" .. amount(status) .. " refunded" .. checking
  return hs
end
if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = "Failed: " .. describe(status.error)
  return hs
end
if phase == "Canceled" then
  hs.status = "Degraded"
  hs.message = "Canceled at the provider: no money was returned"
  return hs
end

if phase == "Pending" or phase == "RequiresAction" then
  if status.error ~= nil and status.error.retryable == false then
    hs.status = "Degraded"
    hs.message = phase .. ": " .. describe(status.error)
    return hs
  end
  if status.error ~= nil then
    hs.status = "Progressing"
    hs.message = phase .. " (retrying): " .. describe(status.error)
    return hs
  end
  if phase == "RequiresAction" then
    hs.status = "Suspended"
    hs.message = "RequiresAction: the provider waits for the customer's details" .. checking
    return hs
  end
  hs.status = "Progressing"
  if status.refundId ~= nil then
    hs.message = "Pending: the provider is processing the refund of" .. amount(status)
      .. checking
  else
    hs.message = "Pending: reserving the amount and creating the refund"
  end
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown phase " .. tostring(phase)
return hs
