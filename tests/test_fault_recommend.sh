#!/bin/bash
# Fault suite for the recommend worker (tests/fault_suite.sh): a catalogue of
# 40 items, then 20k ViewingEvents of 400 users with poison (an empty user
# id, a rating of 9, a timestamp in 2100, undecodable bytes); 5 SIGKILLs, a
# broker outage, a Redis crash. Every key of the worker's group (histories,
# co-occurrences, neighbour lists, popularity, ids, ...) must equal a clean
# pass's, compared generically so that it survives changes to the layout.
# One partition: the worker's float sums and top-K lists over items depend
# on the order in which events of different users arrive, which only one
# partition fixes (a clean pass over 2 partitions is not reproducible
# either). The catalogue goes first (fault_setup).
W=recommend
PARTS=1
IN_TOPICS="viewing-events items"
OUT_TOPIC=recommendations
OUT_MODE=key
W_ARGS="-X batch.max.records=500"
fault_prepare() { :; }
# shellcheck source=tests/fault_recommend_setup.sh
source "$(dirname "$0")/fault_recommend_setup.sh"
# shellcheck source=tests/fault_suite.sh
source "$(dirname "$0")/fault_suite.sh"
fault_main
