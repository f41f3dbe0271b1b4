#!/bin/bash
# Fault suite for the count worker (tests/fault_suite.sh): 20k ViewingEvents
# with poison, 5 SIGKILLs, a broker outage, a Redis crash; state equal to a
# clean pass, every valid record counted and output once, poison in the DLQ.
W=count
PARTS=3
IN_TOPICS=viewing-events
OUT_TOPIC=counts
OUT_MODE=record
# Small batches, so a kill lands between commits of a chunk.
W_ARGS="-X batch.max.records=200"
fault_prepare() { :; }
# shellcheck source=tests/fault_suite.sh
source "$(dirname "$0")/fault_suite.sh"
fault_main
