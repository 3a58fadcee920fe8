// Records an id the SDK is about to send, in localStorage: it outlives the page's unload, and the
// next page of the same origin (the driver's `/left`) reads it.
export function record(id, name) {
  const sent = JSON.parse(localStorage.getItem('spillway-sent') ?? '[]')
  sent.push({ id, name })
  localStorage.setItem('spillway-sent', JSON.stringify(sent))
}
