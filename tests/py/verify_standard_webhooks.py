"""Check requests hookd signed with the official Standard Webhooks library (PyPI
`standardwebhooks`). Reads a JSON list of {secret, headers, body} from the file named by argv[1]
and prints a JSON list: true where the library accepts the request, else the library's error."""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

results = []
with open(sys.argv[1], encoding="utf-8") as f:
    cases = json.load(f)
for case in cases:
    try:
        Webhook(case["secret"]).verify(case["body"], case["headers"], json_parse=False)
        results.append(True)
    except WebhookVerificationError as e:
        results.append(str(e))
print(json.dumps(results))
