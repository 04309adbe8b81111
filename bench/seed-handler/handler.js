// The workshop chapter's solution (seed/chapter-5-kafka-producer.md), in
// JavaScript, with its logic unchanged: for each INSERT record, unmarshall
// the NewImage, log it, await one kafkajs `send` (acks -1, kafkajs's
// default), log the send response. `raffle-outbox bench` runs it on the same
// messages and broker as the relay and compares CPU time per row.
//
// Usage: node handler.js <bootstrap> <topic> <events.json>
// where events.json is a list of DynamoDB stream events ({"Records": [...]}),
// each handled as one Lambda invocation would be. Prints one JSON line on
// stdout: rows sent, CPU time (user, system) of the handler invocations
// only (after the producer connected), peak RSS, wall time.
const { readFileSync } = require('node:fs');
const { Kafka, logLevel } = require('kafkajs');
const { unmarshall } = require('@aws-sdk/util-dynamodb');

const [bootstrap, TOPIC_NAME, eventsFile] = process.argv.slice(2);

async function getKafkaClient() {
  const kafka = new Kafka({ clientId: 'seed-handler', brokers: bootstrap.split(','), logLevel: logLevel.ERROR });
  const producer = kafka.producer();
  await producer.connect();
  return producer;
}

// The chapter's handler, verbatim but for the client being passed in (the
// chapter's getKafkaClient caches one per container, as this does).
const handler = async (kafka, dynamoDbStreamEvent) => {
  for (const record of dynamoDbStreamEvent.Records) {
    if (record.eventName == 'INSERT' && record.dynamodb?.NewImage) {
      const newImage = record.dynamodb.NewImage;
      const unmarshalledNewImage = unmarshall(newImage);
      console.log(JSON.stringify(unmarshalledNewImage));
      const sendResp = await kafka.send({
        topic: TOPIC_NAME,
        messages: [
          {
            value: JSON.stringify(unmarshalledNewImage),
            key: unmarshalledNewImage.id,
          },
        ],
      });
      console.log('Send response: ', JSON.stringify(sendResp));
      sent += 1;
    }
  }
};

let sent = 0;

(async () => {
  const events = JSON.parse(readFileSync(eventsFile, 'utf8'));
  const kafka = await getKafkaClient();
  const started = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  for (const event of events) {
    await handler(kafka, event);
  }
  const used = process.cpuUsage(cpu);
  const wall_ms = Number(process.hrtime.bigint() - started) / 1e6;
  await kafka.disconnect();
  console.error(JSON.stringify({
    rows: sent,
    cpu_user_us: used.user,
    cpu_system_us: used.system,
    peak_rss_mb: process.resourceUsage().maxRSS / 1024,
    wall_ms,
  }));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
