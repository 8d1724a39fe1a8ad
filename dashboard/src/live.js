// The live parts of the page: one feed per collection and the WebSocket,
// started after sign-in and stopped on sign-out.

import { Feed } from './feed.js';
import { Socket } from './socket.js';
import {
  addReading,
  prune,
  putAlert,
  putDevice,
  putLatest,
  resetAlerts,
  resetDevices,
  resetLatest,
  resetReadings,
} from './model.js';

export const socket = new Socket();

let feeds = [];
let pruner = null;

/**
 * Starts the feeds and the socket. `expired(name)` is told when a feed had
 * to load a new snapshot because its cursor expired.
 */
export function start({ expired, denied }) {
  stop();
  const common = { expired, denied };
  feeds = [
    new Feed('devices', '/v1/devices', {
      ...common,
      reset: resetDevices,
      event: (_, o) => putDevice(o),
    }),
    new Feed('latest', '/v1/latest', {
      ...common,
      reset: resetLatest,
      event: (_, o) => putLatest(o),
    }),
    new Feed('alerts', '/v1/alerts', {
      ...common,
      reset: resetAlerts,
      event: (_, o) => putAlert(o),
    }),
    // The last hour of readings: sparklines, plots, the readings table.
    new Feed('readings', '/v1/readings', {
      ...common,
      listQuery: { since: '1h', limit: 5000 },
      maxPages: 40,
      reset: (items) => resetReadings(items),
      event: (_, o) => addReading(o),
    }),
  ];
  for (const f of feeds) f.start();
  socket.start();
  pruner = setInterval(() => prune(), 60_000);
}

export function stop() {
  for (const f of feeds) f.stop();
  feeds = [];
  socket.stop();
  clearInterval(pruner);
}

/** For the browser test and the curious: each feed's cursor and loads. */
export function feedsInfo() {
  return feeds.map((f) => ({ name: f.name, rv: f.rv, loads: f.loads }));
}
