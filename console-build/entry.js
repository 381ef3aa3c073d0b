// What the console takes from matrix-widget-api: the widget side (WidgetApi)
// and, for the browser test's client page, the client side (ClientWidgetApi).
export {
  WidgetApi,
  ClientWidgetApi,
  WidgetDriver,
  Widget,
  MatrixCapabilities,
  WidgetApiToWidgetAction,
  OpenIDRequestState,
} from "matrix-widget-api";
