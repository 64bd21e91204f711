pub struct Net;
