/* Stand-in for the Arduino_BMI270_BMM150 library (Nano 33 BLE Sense rev2). */
#include "studio_imu_stub.h"
