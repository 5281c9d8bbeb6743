/* Stand-in for the Arduino_LSM9DS1 library (Nano 33 BLE Sense rev1). */
#include "studio_imu_stub.h"
