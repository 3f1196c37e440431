/** Errors kafkajs reports while a consumer group rebalances: expected, and retried by themselves. */
export const REBALANCE_CHATTER = /rebalanc|REBALANCE_IN_PROGRESS|NOT_COORDINATOR|not the correct coordinator|UNKNOWN_MEMBER_ID|ILLEGAL_GENERATION|coordinator is loading/i;
