"""The delivery worker: lanes, signing, the POST, the outcome and what follows it."""
