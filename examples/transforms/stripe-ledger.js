// Stripe → ledger: turn a Stripe payment event into the ledger service's entry message.
//
// The ledger wants amounts in minor units with an upper-case currency, the Stripe object's id
// as its reference, and an idempotency key it can deduplicate on (the Stripe event id is stable
// across Stripe's own retries and hookd's). Events the ledger does not book are skipped.
const BOOKED = {
  "payment_intent.succeeded": "credit",
  "charge.refunded": "debit",
};

function transform(event) {
  const direction = BOOKED[event.type];
  if (!direction) {
    return null;
  }
  const stripe = event.body;
  const object = stripe.data.object;
  const amount =
    direction === "debit" ? object.amount_refunded : object.amount_received ?? object.amount;
  return {
    body: {
      entry_id: "stripe:" + stripe.id,
      direction: direction,
      amount_minor: amount,
      currency: String(object.currency).toUpperCase(),
      reference: object.id,
      customer: object.customer ?? null,
      booked_at: new Date(stripe.created * 1000).toISOString(),
      source: { provider: event.provider, hookd_event: event.id },
    },
    headers: { "idempotency-key": "stripe:" + stripe.id },
  };
}
