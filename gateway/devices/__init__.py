"""One coordinator per device: drives its driver, tracks its health, turns its input into domain calls and
domain signals into driver calls. Feedback (a beep, a light) follows the commit that records its cause."""
